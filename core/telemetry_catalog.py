"""The local telemetry store's SQLite side (core.telemetry_store): the schema and its upgrades in place, the
catalog queries, and the helpers that turn records and rows into what the store writes and reads.

SQLite holds what must be transactional: one row per request (its id is unique), the catalog of request and
label segments (Parquet files beside the database, per endpoint and hour), and the labels, where the latest
one of a request wins.
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Sequence

from core.telemetry import RequestRecord
from core.types import utc

if TYPE_CHECKING:
    import pyarrow as pa


SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    time_us INTEGER NOT NULL, request_id TEXT NOT NULL, endpoint TEXT NOT NULL, deployment TEXT,
    model_version TEXT, inputs TEXT, prediction TEXT, score REAL, latency_ms REAL, status_code INTEGER,
    generation TEXT);
CREATE INDEX IF NOT EXISTS requests_endpoint_time ON requests (endpoint, time_us);
CREATE UNIQUE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
CREATE TABLE IF NOT EXISTS labels (request_id TEXT PRIMARY KEY, label TEXT, time_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS segments (id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL, hour INTEGER NOT NULL,
    path TEXT NOT NULL, rows INTEGER NOT NULL, first_us INTEGER NOT NULL, last_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS segments_endpoint_hour ON segments (endpoint, hour);
"""
# Rows in segments carry typed = 1; rows of older versions (typed NULL) keep their inputs in SQLite.
LEGACY_INDEX = "CREATE INDEX IF NOT EXISTS requests_legacy ON requests (endpoint, time_us) WHERE typed IS NULL"
LEGACY_SQL = """SELECT time_us, request_id, deployment, model_version, inputs, prediction AS prediction_json,
    score, latency_ms, status_code, generation FROM requests
WHERE typed IS NULL AND endpoint = ? AND time_us >= ? AND time_us < ? AND (? IS NULL OR deployment = ?)"""
# Labels carry their request's endpoint and time (filled when the label or, if later, the request is written),
# so a window's labels are one index range, not a join over every request of the window.
LABEL_COLUMNS = (("endpoint", "TEXT"), ("request_us", "INTEGER"))
LABELS_INDEX = "CREATE INDEX IF NOT EXISTS labels_request ON labels (endpoint, request_us)"
LABELS_ORPHANS = "CREATE INDEX IF NOT EXISTS labels_orphans ON labels (request_id) WHERE request_us IS NULL"
LABELS_ADOPT = """UPDATE labels SET endpoint = r.endpoint, request_us = r.time_us FROM requests r
WHERE labels.request_us IS NULL AND r.request_id = labels.request_id
RETURNING labels.request_id, labels.label, labels.time_us, labels.endpoint, labels.request_us"""
LABEL_ROWS = "SELECT request_id, label, time_us, endpoint, request_us FROM labels WHERE request_us IS NOT NULL"
# Label segments hold, per endpoint and request hour, the labels current when each was written: a later
# segment (higher id) supersedes an earlier one's label of the same request.
LABEL_SEGMENTS = """CREATE TABLE label_segments (id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL,
    hour INTEGER NOT NULL, path TEXT NOT NULL, rows INTEGER NOT NULL);
CREATE INDEX label_segments_endpoint_hour ON label_segments (endpoint, hour)"""
LABEL_SEGMENTS_SQL = "SELECT path, hour FROM label_segments WHERE endpoint = ? AND hour >= ? AND hour <= ? ORDER BY id"
SEGMENTS_SQL = "SELECT path FROM segments WHERE endpoint = ? AND hour >= ? AND hour <= ? AND last_us >= ? " \
               "AND first_us < ? ORDER BY hour, id"
COUNT_HOURS_SQL = """SELECT (SELECT COALESCE(SUM(rows), 0) FROM segments WHERE endpoint = ? AND hour >= ? AND hour < ?)
    + (SELECT COUNT(*) FROM requests WHERE typed IS NULL AND endpoint = ? AND time_us >= ? AND time_us < ?)"""
HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (a float timestamp could be off by one)."""
    if moment.tzinfo is None:
        utc(moment)  # raises, naming the naive time
    return (moment - _EPOCH) // _MICROSECOND


def create(db: sqlite3.Connection) -> None:
    """The tables and indexes, a store of an older version upgraded in place."""
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    for name, kind in (("typed", "INTEGER"), ("generation", "TEXT")):  # a store of an older version
        if name not in columns:
            add_column(db, "requests", name, kind)
    if "request_us" not in {row[1] for row in db.execute("PRAGMA table_info(labels)")}:
        for name, kind in LABEL_COLUMNS:
            add_column(db, "labels", name, kind)
    for statement in (LEGACY_INDEX, LABELS_INDEX, LABELS_ORPHANS):
        db.execute(statement)


def add_column(db: sqlite3.Connection, table: str, name: str, kind: str) -> None:
    try:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    except sqlite3.OperationalError as exc:  # another process added it first
        if "duplicate column" not in str(exc):
            raise


def arrow_rows(cursor: sqlite3.Cursor, types: dict) -> "pa.Table":
    """A query's rows as an Arrow table: the columns named in `types` so typed, the others text."""
    import pyarrow as pa

    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pa.table({name: pa.array(column, types.get(name, pa.string()))
                     for name, column in zip(names, columns, strict=True)})


def fresh_records(db: sqlite3.Connection, records: Sequence[RequestRecord]) -> list[tuple[int, RequestRecord]]:
    """(time in microseconds, record) of the records whose id is not stored yet, first of any repeats."""
    ids = list(dict.fromkeys(r.request_id for r in records))
    stored: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        stored.update(row[0] for row in db.execute(
            f"SELECT request_id FROM requests WHERE request_id IN ({','.join('?' * len(chunk))})", chunk))
    fresh = []
    for record in records:
        if record.request_id not in stored:
            stored.add(record.request_id)
            fresh.append((micros(record.time), record))
    return fresh


def current_labels(db: sqlite3.Connection, ids: list[str]) -> list[tuple]:
    """The stored (winning) labels of these requests whose request is known."""
    ids = list(dict.fromkeys(ids))
    rows: list[tuple] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows += db.execute(f"{LABEL_ROWS} AND request_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    return rows


def partitions(rows: list[tuple[int, RequestRecord]]) -> list[tuple[tuple[str, int], list]]:
    parts: dict[tuple[str, int], list] = {}
    for t, record in rows:
        parts.setdefault((record.endpoint, t // HOUR_US), []).append((t, record))
    return list(parts.items())


def folder(endpoint: str) -> str:
    """A folder name per endpoint: readable, and distinct even when two names clean up the same."""
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', endpoint)[:40]}-{digest}"
