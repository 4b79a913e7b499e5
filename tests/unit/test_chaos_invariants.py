"""The chaos checker itself: it passes a clean set of stores and names each planted violation (a test that could
not fail would prove nothing about the crash test that relies on it)."""
from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from chaos import invariants
from core.localbus import SqliteBus, provision
from core.records import CHECK, mark_processed, put, record_event
from core.routing import TOPIC
from core.state_sqlite import SqliteStateStore
from core.types import Window, iso
from monitors import windows
from monitors.schedule import check_requested
from retrain.runs import insert, new_record, transition

START = datetime(2024, 3, 1, tzinfo=UTC)
SIZE, LATENESS = timedelta(minutes=20), timedelta(minutes=2)
MONITORS = {"m": (START, SIZE, LATENESS)}
NOW = START + timedelta(minutes=66)  # windows 00:00 and 00:20 are due and ticked; 00:40 is not yet


class Nowhere:
    def publish(self, envelope, *, scheduled_at=None):
        pass


@pytest.fixture
def data(tmp_path):
    store = SqliteStateStore(tmp_path / "state.sqlite")
    bus = SqliteBus(tmp_path / "bus.sqlite")
    provision(bus)
    for k in range(2):
        window = Window(START + k * SIZE, START + (k + 1) * SIZE)
        rec = windows.claim(store, ("m", window), f"msg-{k}", NOW, timedelta(minutes=10))
        windows.relay(store, Nowhere(), windows.stage(store, rec, f"c{k}", []))
        put(store, CHECK, f"c{k}", {"check_id": f"c{k}", "monitor": "m", "window": window.to_json(), "status": "ok"})
        event = check_requested("m", window, NOW, reason="schedule")
        record_event(store, event)
        mark_processed(store, "run-check", event.id, NOW)
    insert(store, new_record("r1", "e", "x", {"kind": "http"}, "key-1", None, START))
    transition(store, "r1", "skipped", START + timedelta(minutes=1))
    (tmp_path / "endpoints.json").write_text(json.dumps({"endpoints": {"e": {"traffic": {"blue": 100}}}}))
    yield tmp_path, store, bus
    store.close()
    bus.close()


def test_clean_stores_pass(data):
    folder, _, _ = data
    result = invariants.check(folder, MONITORS, NOW)
    assert result["violations"] == [] and result["windows_due"] == result["windows_checked"] == 2
    assert (result["runs"], result["runs_terminal"]) == (1, 1)


def test_each_planted_violation_is_named(data):
    folder, store, bus = data
    second = Window(START + SIZE, START + 2 * SIZE)
    windows.update(store, "m", second, lambda r: dataclasses.replace(r, completions=2))  # checked twice
    lost = check_requested("m", Window(START + 2 * SIZE, START + 3 * SIZE), NOW, reason="schedule")
    record_event(store, lost)  # published and audited, but its consumer never saw it
    insert(store, new_record("r2", "e", "y", {"kind": "http"}, "key-2", None, START))  # never finished
    insert(store, new_record("r3", "e", "y", {"kind": "http"}, "key-2", None, START))  # a second run, same key
    (folder / "endpoints.json").write_text(json.dumps({"endpoints": {"e": {"traffic": {"blue": 70, "green": 20}}}}))
    from core.servicebus import to_bus_message

    bus.send(TOPIC, to_bus_message(lost))  # still on the bus after the drain
    violations = invariants.check(folder, MONITORS, NOW)["violations"]
    text = "\n".join(violations)
    assert "finished 2 times, expected 1" in text
    assert "never reached consumer run-check" in text
    assert "run r2 is still requested" in text
    assert "trigger http:key-2 started 2 runs" in text
    assert "sums to 90" in text
    assert "messages left unsettled on the bus" in text
    window = Window(START, START + SIZE)
    store.delete("claim", windows.record_key("m", window))
    assert any(f"m {window.key()}: not checked" in v for v in invariants.check(folder, MONITORS, NOW)["violations"])
    assert iso(START)  # the window keys the checker compares are ISO times
