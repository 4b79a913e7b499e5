"""StateStore on Azure Table Storage (azure-data-tables), identity-based.

Layout: PartitionKey = encoded kind, RowKey = encoded key, the document as JSON text in string
properties `doc0..docN` (a string property holds at most 64 KiB) and `parts` = N + 1.

Keys: Table Storage forbids / \\ # ? and control characters in keys, and `%` and `'` in keys break
some of its operations (URL and OData quoting), so each of those and the escape `!` itself become
`!XX` (hex). The code is reversible and prefix-preserving (a key starts with a prefix exactly when
its encoding starts with the prefix's encoding), so `list(kind, prefix)` is a range query on
RowKey; it is not order-preserving (`!2F` sorts before `&`), so `list` sorts the decoded keys.

The SDK is imported lazily: this module is imported by the Functions app at start.
"""
from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from core.errors import (
    ConfigurationError,
    MlopsError,
    NotFound,
    ValidationFailed,
)
from core.ports import Doc
from core.state_sqlite import check_name, dump_document, prefix_upper_bound

if TYPE_CHECKING:
    from azure.data.tables import TableClient

_FORBIDDEN = re.compile(r"[!%'/\\#?\x00-\x1f\x7f-\x9f]")
_ESCAPED = re.compile(r"!([0-9A-F]{2})")
_MAX_KEY_BYTES = 1024  # 1 KiB of UTF-16: 512 BMP characters after encoding
_CHUNK_CHARS = 16_000  # <= 32,000 UTF-16 code units = 64,000 bytes, under the 64 KiB property limit
_MAX_PARTS = 14  # an entity holds at most 1 MiB in all


def encode_key(text: str) -> str:
    return _FORBIDDEN.sub(lambda m: f"!{ord(m.group()):02X}", text)


def decode_key(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)


def translate_azure_error(exc: Exception, what: str) -> MlopsError:
    """Storage's errors through the one translation (core.azure_errors), with the role hint a 403 needs."""
    from core.azure_errors import azure_error

    return azure_error(exc, what, service="storage", hint_403="; does the identity have a Storage Data role?")


def _entity(kind: str, key: str, data: Mapping[str, Any]) -> dict[str, Any]:
    pk, rk = encode_key(kind), encode_key(key)
    for field, encoded, text in (("kind", pk, kind), ("key", rk, key)):
        if len(encoded.encode("utf-16-le")) > _MAX_KEY_BYTES:
            raise ValidationFailed(f"{field} {text[:60]!r}... is over Table Storage's 1 KiB key limit once "
                                   f"escaped ({len(encoded)} characters)", field=field)
    text = dump_document(data)
    parts = [text[i:i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)] or [""]
    if len(parts) > _MAX_PARTS:
        raise ValidationFailed(f"{kind} {key!r}: document of {len(text)} characters is too large for "
                               f"one table entity (max {_MAX_PARTS * _CHUNK_CHARS})", field="data")
    entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk, "parts": len(parts)}
    entity.update({f"doc{i}": part for i, part in enumerate(parts)})
    return entity


def _doc(entity: Any) -> Doc:
    text = "".join(entity[f"doc{i}"] for i in range(int(entity["parts"])))
    return Doc(json.loads(text), entity.metadata["etag"])


class TableStateStore:
    """Conforms to core.ports.StateStore; ETags are the service's own.

    `table_client_factory()` -> TableClient replaces the default client (tests use it to put a fake
    transport at the network edge). The table is created on first use if it is missing.
    """

    def __init__(self, endpoint: str, *, credential: Any = None, table: str = "mlopsstate",
                 table_client_factory: Callable[[], TableClient] | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", table):
            raise ValidationFailed(f"table name {table!r} must be 3-63 letters/digits, starting with a letter",
                                   field="table")
        if credential is None and table_client_factory is None and not endpoint.lower().startswith("https://"):
            raise ConfigurationError(f"tables endpoint {endpoint!r} must be https:// for identity-based access "
                                     "(MLOPS_TABLES_ENDPOINT)")
        self.endpoint, self.table = endpoint.rstrip("/"), table
        self._credential = credential
        self._factory = table_client_factory
        self._client: TableClient | None = None
        self._lock = threading.Lock()

    def _table(self) -> TableClient:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                client = self._factory() if self._factory else self._default_client()
                self._ensure_table(client)
                self._client = client
        return self._client

    def _default_client(self) -> TableClient:
        from azure.data.tables import TableClient

        credential = self._credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return TableClient(self.endpoint, self.table, credential=credential)

    def _ensure_table(self, client: TableClient) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            client.create_table()
        except ResourceExistsError:
            return
        except AzureError as exc:
            raise translate_azure_error(exc, f"create table {self.table}") from exc

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return fn(*args, **kwargs)
        except AzureError as exc:
            raise translate_azure_error(exc, what) from exc

    def get(self, kind: str, key: str) -> Doc | None:
        check_name(kind, key)
        try:
            entity = self._call(f"get {kind} {key!r}", self._table().get_entity, encode_key(kind), encode_key(key))
        except NotFound:
            return None
        return _doc(entity)

    def insert(self, kind: str, key: str, data: Mapping[str, Any]) -> str:
        check_name(kind, key)
        entity = _entity(kind, key, data)
        return self._call(f"insert {kind} {key!r}", self._table().create_entity, entity)["etag"]

    def replace(self, kind: str, key: str, data: Mapping[str, Any], etag: str) -> str:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        check_name(kind, key)
        entity = _entity(kind, key, data)
        meta = self._call(f"replace {kind} {key!r}", self._table().update_entity, entity, mode=UpdateMode.REPLACE,
                          etag=etag, match_condition=MatchConditions.IfNotModified)
        return meta["etag"]

    def delete(self, kind: str, key: str, etag: str | None = None) -> None:
        """Delete a document; deleting one that is already gone is not an error (as in SQLite)."""
        from azure.core import MatchConditions

        check_name(kind, key)
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        self._call(f"delete {kind} {key!r}", self._table().delete_entity,
                   partition_key=encode_key(kind), row_key=encode_key(key), **condition)

    def list(self, kind: str, prefix: str = "") -> list[tuple[str, Doc]]:
        check_name(kind, "")
        query, params = "PartitionKey eq @pk", {"pk": encode_key(kind)}
        low = encode_key(prefix)
        high = prefix_upper_bound(low)
        if low:
            query, params["low"] = query + " and RowKey ge @low", low
        if low and high is not None and ord(high[-1]) <= 0xFFFF:  # an astral bound may sort low in UTF-16
            query, params["high"] = query + " and RowKey lt @high", high
        entities = self._call(f"list {kind} {prefix!r}",
                              lambda: list(self._table().query_entities(query, parameters=params)))
        # The server's range is a superset under any string ordering; filter and sort here exactly.
        found = ((decode_key(e["RowKey"]), e) for e in entities)
        return sorted(((k, _doc(e)) for k, e in found if k.startswith(prefix)), key=lambda item: item[0])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
