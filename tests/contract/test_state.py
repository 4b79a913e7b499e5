"""One contract for every StateStore adapter: SQLite, and Table Storage through the real SDK on Azurite."""
from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConcurrencyConflict, NotFound, ValidationFailed
from core.state_sqlite import SqliteStateStore

AWKWARD_KEYS = ["a/b", "a/b/c", "a:b", "a#1", "a?q=1", "a b", "a%2F", "a!2F", "it's", "a''", "a\\x", "añ", "a😀",
                "a~", "a.", "ab", "a", "b/a", "é/ü", "a/\t"]
NESTED = {"window": {"start": "2013-04-01T00:00:00Z", "end": "2013-04-02T00:00:00Z"},
          "findings": [{"name": "dep_delay", "statistic": 0.12, "drift": True, "tags": ["a", None]}],
          "count": 3, "ratio": 0.5, "note": "ünïcode ✓ and \"quotes\""}


def test_insert_then_get_returns_the_same_document(state_store):
    etag = state_store.insert("check", "m1/w1", NESTED)
    doc = state_store.get("check", "m1/w1")
    assert doc is not None
    assert doc.data == NESTED
    assert doc.etag == etag


def test_get_of_a_missing_key_is_none(state_store):
    assert state_store.get("check", "nothing") is None


def test_inserting_an_existing_key_conflicts_and_keeps_the_first(state_store):
    state_store.insert("inbox", "c/m1", {"n": 1})
    with pytest.raises(ConcurrencyConflict):
        state_store.insert("inbox", "c/m1", {"n": 2})
    assert state_store.get("inbox", "c/m1").data == {"n": 1}


def test_same_key_in_two_kinds_is_two_documents(state_store):
    state_store.insert("check", "k", {"kind": "check"})
    state_store.insert("run", "k", {"kind": "run"})
    assert state_store.get("check", "k").data == {"kind": "check"}
    assert [key for key, _ in state_store.list("run")] == ["k"]


def test_replace_with_fresh_etag_wins_and_stale_etag_conflicts(state_store):
    first = state_store.insert("incident", "i1", {"state": "open"})
    second = state_store.replace("incident", "i1", {"state": "acknowledged"}, first)
    assert second != first
    with pytest.raises(ConcurrencyConflict):
        state_store.replace("incident", "i1", {"state": "closed"}, first)
    doc = state_store.get("incident", "i1")
    assert doc.data == {"state": "acknowledged"}
    assert doc.etag == second


def test_replace_of_a_missing_key_is_not_found(state_store):
    etag = state_store.insert("incident", "other", {})
    with pytest.raises(NotFound):
        state_store.replace("incident", "missing", {"state": "x"}, etag)


def test_delete_checks_the_etag_and_is_idempotent(state_store):
    first = state_store.insert("run", "r1", {"v": 1})
    current = state_store.replace("run", "r1", {"v": 2}, first)
    with pytest.raises(ConcurrencyConflict):
        state_store.delete("run", "r1", first)
    assert state_store.get("run", "r1") is not None
    state_store.delete("run", "r1", current)
    assert state_store.get("run", "r1") is None
    state_store.delete("run", "r1")  # already gone: nothing to do
    state_store.insert("run", "r2", {})
    state_store.delete("run", "r2")
    assert state_store.list("run") == []


def test_list_by_prefix_in_key_order_with_awkward_keys(state_store):
    for i, key in enumerate(AWKWARD_KEYS):
        state_store.insert("claim", key, {"i": i, "key": key})
    state_store.insert("check", "a/b/elsewhere", {})

    everything = state_store.list("claim")
    assert [key for key, _ in everything] == sorted(AWKWARD_KEYS)
    assert all(doc.data["key"] == key for key, doc in everything)
    for prefix in ["a/", "a/b", "a", "a%", "a!", "a'", "a\\", "é/", "a😀", "a~", "a.", "zzz", "a/\t"]:
        listed = [key for key, _ in state_store.list("claim", prefix)]
        assert listed == sorted(k for k in AWKWARD_KEYS if k.startswith(prefix)), prefix


def test_listed_etags_can_replace(state_store):
    state_store.insert("watermark", "m1", {"w": 1})
    [(key, doc)] = state_store.list("watermark", "m")
    state_store.replace("watermark", key, {"w": 2}, doc.etag)
    assert state_store.get("watermark", "m1").data == {"w": 2}


def test_documents_over_64_kib_round_trip(state_store):
    big = {"values": list(range(10_000)), "text": "ü" * 70_000}
    etag = state_store.insert("check", "big", big)
    assert state_store.get("check", "big").data == big
    state_store.replace("check", "big", {"small": True}, etag)
    assert state_store.get("check", "big").data == {"small": True}


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, ["not", "a", "mapping"]])
def test_non_json_documents_are_refused_naming_the_field(state_store, bad):
    with pytest.raises(ValidationFailed) as info:
        state_store.insert("check", "bad", bad)
    assert info.value.field == "data"
    assert state_store.get("check", "bad") is None


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_table_key_encoding_is_reversible_safe_and_prefix_preserving(key, prefix):
    from core.state_tables import decode_key, encode_key

    encoded = encode_key(key)
    assert decode_key(encoded) == key
    assert not set(encoded) & set("/\\#?%'") and all(ord(c) > 0x1F and not 0x7F <= ord(c) <= 0x9F for c in encoded)
    assert encoded.startswith(encode_key(prefix)) == key.startswith(prefix)


def _race(workers: int, attempt: Callable[[int], str]) -> tuple[list[int], list[int]]:
    """Run attempt(i) on `workers` threads released together; return (winners, conflicted)."""
    barrier = threading.Barrier(workers)
    won: list[int] = []
    lost: list[int] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            attempt(i)
            won.append(i)
        except ConcurrencyConflict:
            lost.append(i)
        except BaseException as exc:  # surfaced by the assertion below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return won, lost


def test_racing_inserts_have_exactly_one_winner(state_store):
    won, lost = _race(8, lambda i: state_store.insert("inbox", "consumer/msg-1", {"by": i}))
    assert len(won) == 1 and len(lost) == 7
    assert state_store.get("inbox", "consumer/msg-1").data == {"by": won[0]}


def test_racing_replaces_with_one_etag_have_exactly_one_winner(state_store):
    etag = state_store.insert("watermark", "m1", {"by": None})
    won, lost = _race(8, lambda i: state_store.replace("watermark", "m1", {"by": i}, etag))
    assert len(won) == 1 and len(lost) == 7
    assert state_store.get("watermark", "m1").data == {"by": won[0]}


def _count_up(path: str, times: int) -> None:
    store = SqliteStateStore(path)
    for _ in range(times):
        while True:
            doc = store.get("counter", "c")
            try:
                store.replace("counter", "c", {"n": doc.data["n"] + 1}, doc.etag)
                break
            except ConcurrencyConflict:
                continue


def test_sqlite_loses_no_update_across_processes_and_threads(tmp_path):
    store = SqliteStateStore(tmp_path / "state.db")
    store.insert("counter", "c", {"n": 0})
    forked = multiprocessing.get_context("fork")
    processes = [forked.Process(target=_count_up, args=(str(tmp_path / "state.db"), 40)) for _ in range(3)]
    threads = [threading.Thread(target=_count_up, args=(str(tmp_path / "state.db"), 40)) for _ in range(2)]
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*processes, *threads]:
        worker.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert store.get("counter", "c").data == {"n": 200}


def test_sqlite_documents_survive_reopening(tmp_path):
    SqliteStateStore(tmp_path / "state.db").insert("run", "r1", NESTED)
    assert SqliteStateStore(tmp_path / "state.db").get("run", "r1").data == NESTED


# --- Table Storage: service errors map onto the retry / never-retry tree (fake transport at the network edge)

class _ScriptedTransport:
    """An azure.core transport answering every entity request with one status; table creation succeeds."""

    def __init__(self, status: int, code: str) -> None:
        self.status, self.code = status, code

    def send(self, request, **kwargs):
        import requests
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        creating_table = request.method == "POST" and request.url.rstrip("/").endswith("/Tables")
        status = 201 if creating_table else self.status
        error = {"odata.error": {"code": self.code, "message": {"lang": "en-US", "value": "scripted"}}}
        body = json.dumps({"TableName": "t"} if creating_table else error)
        raw = requests.Response()
        raw.status_code, raw._content, raw.url, raw.reason = status, body.encode(), request.url, "scripted"
        raw._content_consumed = True  # the body is already read, as after a real exchange
        raw.headers["Content-Type"] = "application/json;odata=minimalmetadata"
        return RestRequestsTransportResponse(request=request, internal_response=raw)

    def open(self) -> None: ...
    def close(self) -> None: ...
    def sleep(self, duration: float) -> None: ...
    def __enter__(self):
        return self

    def __exit__(self, *args) -> None: ...


def _table_store(transport=None, endpoint: str = "http://127.0.0.1:1/devstoreaccount1"):
    from azure.data.tables import TableClient

    from core.state_tables import TableStateStore
    from tests.azurite import DEV_ACCOUNT, DEV_KEY

    def factory() -> TableClient:
        from azure.core.credentials import AzureNamedKeyCredential

        extra = {"transport": transport} if transport else {}
        return TableClient(endpoint, "state", credential=AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY),
                           retry_total=0, **extra)

    return TableStateStore(endpoint, table="state", table_client_factory=factory)


@pytest.mark.parametrize(("status", "code", "expected"), [
    (503, "ServerBusy", "RetryableError"),
    (500, "InternalError", "RetryableError"),
    (429, "TooManyRequests", "RetryableError"),
    (412, "UpdateConditionNotSatisfied", "ConcurrencyConflict"),
    (400, "InvalidInput", "PermanentError"),
    (403, "AuthorizationPermissionMismatch", "PermanentError"),
])
def test_table_service_errors_are_classified(status, code, expected):
    from core import errors

    store = _table_store(_ScriptedTransport(status, code))
    with pytest.raises(getattr(errors, expected)) as info:
        store.replace("watermark", "m1", {"w": 1}, 'W/"datetime\'2013-04-01T00%3A00%3A00Z\'"')
    assert isinstance(info.value, errors.RetryableError) == (expected != "PermanentError")
    assert "watermark" in str(info.value)


def test_unreachable_table_storage_is_retryable():
    from core.errors import RetryableError

    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}/devstoreaccount1"
        with pytest.raises(RetryableError):
            _table_store(endpoint=endpoint).get("watermark", "m1")


def test_identity_based_adapters_need_https_and_name_the_setting():
    from core.errors import ConfigurationError
    from core.reports import BlobReportStore
    from core.state_tables import TableStateStore

    with pytest.raises(ConfigurationError, match="MLOPS_TABLES_ENDPOINT"):
        TableStateStore("http://example.table.core.windows.net")
    with pytest.raises(ConfigurationError, match="MLOPS_BLOB_ENDPOINT"):
        BlobReportStore("http://example.blob.core.windows.net")


def test_importing_the_adapters_loads_no_azure_sdk():
    """The Functions app imports these at start; the SDKs load on first use only."""
    code = ("import sys, core.state_sqlite, core.state_tables, core.reports; "
            "print(sorted(m for m in sys.modules if m.startswith('azure')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_sqlite_lock_held_past_the_busy_timeout_is_retryable_and_loses_nothing(tmp_path):
    import sqlite3

    from core.errors import RetryableError

    store = SqliteStateStore(tmp_path / "state.db", busy_timeout_s=0.1)
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process mid-write
    with pytest.raises(RetryableError, match="busy"):
        store.insert("inbox", "c/m1", {"n": 1})
    blocker.execute("COMMIT")
    blocker.close()
    store.insert("inbox", "c/m1", {"n": 1})  # the retry succeeds
    assert store.get("inbox", "c/m1").data == {"n": 1}


def test_table_keys_over_the_service_limit_are_refused_naming_the_field(azurite):
    from core.state_tables import TableStateStore
    from tests.azurite import unique_name

    store = TableStateStore(azurite.table_endpoint, credential=azurite.credential, table=unique_name("state"))
    store.insert("check", "k" * 512, {"fits": True})
    with pytest.raises(ValidationFailed) as info:
        store.insert("check", "/" * 171, {"fits": False})  # 513 characters once escaped
    assert info.value.field == "key"
    assert [len(key) for key, _ in store.list("check")] == [512]
