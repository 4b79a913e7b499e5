"""StateStore on one SQLite file: the embedded default for a single machine.

WAL lets readers run beside the one writer; every write is a single conditional statement, so the
busy timeout (not an explicit transaction) is what serialises racing writers, across threads and
processes alike. Each thread (and each forked process) opens its own connection.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Mapping

from core.errors import ConcurrencyConflict, NotFound, RetryableError, ValidationFailed
from core.ports import Doc

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    data TEXT NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID
"""


def dump_document(data: Mapping[str, Any]) -> str:
    """Plain JSON text of a document; NaN, infinities and non-JSON values are refused up front."""
    if not isinstance(data, Mapping):
        raise ValidationFailed(f"document must be a mapping, got {type(data).__name__}", field="data")
    try:
        return json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"document is not plain JSON: {exc}", field="data") from exc


def check_name(kind: str, key: str) -> None:
    if not isinstance(kind, str) or not kind:
        raise ValidationFailed(f"kind must be a non-empty string, got {kind!r}", field="kind")
    if not isinstance(key, str):
        raise ValidationFailed(f"key must be a string, got {type(key).__name__}", field="key")


def prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with `prefix` (None: no bound exists)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters; skip past them
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


class SqliteStateStore:
    """(kind, key) -> JSON document with a fresh random etag per write."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: autocommit, each statement is its own transaction.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    def _execute(self, sql: str, args: tuple | list) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, args)
        except sqlite3.OperationalError as exc:
            # Only lock contention outlasting the busy timeout is worth a retry; anything else is a bug.
            if "locked" in str(exc) or "busy" in str(exc):
                raise RetryableError(f"state database {self.path} is busy: {exc}") from exc
            raise

    def get(self, kind: str, key: str) -> Doc | None:
        check_name(kind, key)
        row = self._execute("SELECT data, etag FROM docs WHERE kind=? AND key=?", (kind, key)).fetchone()
        return Doc(json.loads(row[0]), row[1]) if row else None

    def insert(self, kind: str, key: str, data: Mapping[str, Any]) -> str:
        check_name(kind, key)
        text, etag = dump_document(data), uuid.uuid4().hex
        try:
            self._execute("INSERT INTO docs (kind, key, data, etag) VALUES (?, ?, ?, ?)", (kind, key, text, etag))
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyConflict(f"{kind} {key!r} already exists") from exc
        return etag

    def replace(self, kind: str, key: str, data: Mapping[str, Any], etag: str) -> str:
        check_name(kind, key)
        text, new_etag = dump_document(data), uuid.uuid4().hex
        cur = self._execute("UPDATE docs SET data=?, etag=? WHERE kind=? AND key=? AND etag=?",
                            (text, new_etag, kind, key, etag))
        if cur.rowcount == 1:
            return new_etag
        if self.get(kind, key) is None:
            raise NotFound(f"no {kind} {key!r} to replace")
        raise ConcurrencyConflict(f"{kind} {key!r} changed since etag {etag}")

    def delete(self, kind: str, key: str, etag: str | None = None) -> None:
        """Delete a document; deleting one that is already gone is not an error."""
        check_name(kind, key)
        if etag is None:
            self._execute("DELETE FROM docs WHERE kind=? AND key=?", (kind, key))
            return
        cur = self._execute("DELETE FROM docs WHERE kind=? AND key=? AND etag=?", (kind, key, etag))
        if cur.rowcount == 0 and self.get(kind, key) is not None:
            raise ConcurrencyConflict(f"{kind} {key!r} changed since etag {etag}")

    def list(self, kind: str, prefix: str = "") -> list[tuple[str, Doc]]:
        check_name(kind, "")
        # BINARY collation compares UTF-8 bytes, which orders like Python's str comparison.
        sql, args = "SELECT key, data, etag FROM docs WHERE kind=? AND key>=?", [kind, prefix]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            sql, args = sql + " AND key<?", [*args, upper]
        rows = self._execute(sql + " ORDER BY key", args).fetchall()
        return [(key, Doc(json.loads(data), etag)) for key, data, etag in rows]

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
