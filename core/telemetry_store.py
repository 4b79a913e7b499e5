"""The local telemetry store: one SQLite file the local endpoint writes and the local source reads.

Times are integer microseconds since the epoch (an index range scan, no text parsing); inputs, prediction and
label are JSON text, so any feature set fits one table and reading stays a single indexed query per window.
"""
from __future__ import annotations

import gc
import os
import sqlite3
import threading
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from core.errors import TelemetryUnavailable
from core.retry import retry_transient
from core.telemetry import DeploymentHealth, LabelRecord, RequestRecord, to_json_text
from core.types import utc

if TYPE_CHECKING:
    import pyarrow as pa

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    time_us INTEGER NOT NULL, request_id TEXT NOT NULL, endpoint TEXT NOT NULL, deployment TEXT,
    model_version TEXT, inputs TEXT, prediction TEXT, score REAL, latency_ms REAL, status_code INTEGER,
    generation TEXT);
CREATE INDEX IF NOT EXISTS requests_endpoint_time ON requests (endpoint, time_us);
CREATE UNIQUE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
CREATE TABLE IF NOT EXISTS labels (request_id TEXT PRIMARY KEY, label TEXT, time_us INTEGER NOT NULL);
"""
WINDOW_COLUMNS = ("time_us", "request_id", "deployment", "model_version", "inputs", "prediction", "score",
                  "latency_ms", "status_code", "generation", "label")
_WINDOW_SQL = """
SELECT r.time_us, r.request_id, r.deployment, r.model_version, r.inputs, r.prediction, r.score, r.latency_ms,
       r.status_code, r.generation, l.label
FROM requests r LEFT JOIN labels l ON l.request_id = r.request_id
WHERE r.endpoint = ? AND r.time_us >= ? AND r.time_us < ? AND (? IS NULL OR r.deployment = ?) ORDER BY r.time_us"""


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (a float timestamp could be off by one)."""
    if moment.tzinfo is None:
        utc(moment)  # raises, naming the naive time
    return (moment - _EPOCH) // _MICROSECOND


class SqliteTelemetryStore:
    """Conforms to TelemetrySink and HealthReader. Safe across threads and processes (WAL; writes go through
    one connection per thread and process, kept open: closing a WAL connection checkpoints, ~6 ms a write).

    A request logged twice (a retried flush) is stored once; a label written again replaces an older one.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            _add_generation_column(db)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def write(self, records: Sequence[RequestRecord]) -> None:
        rows = [(micros(r.time), r.request_id, r.endpoint, r.deployment, r.model_version, to_json_text(dict(r.inputs)),
                 to_json_text(r.prediction), r.score, float(r.latency_ms), int(r.status_code),
                 to_json_text(r.generation.to_json()) if r.generation else None) for r in records]
        self._write("INSERT OR IGNORE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def write_labels(self, labels: Sequence[LabelRecord]) -> None:
        rows = [(x.request_id, to_json_text(x.label), micros(x.time)) for x in labels]
        self._write("INSERT INTO labels VALUES (?,?,?) ON CONFLICT (request_id) DO UPDATE SET "
                    "label = excluded.label, time_us = excluded.time_us WHERE excluded.time_us >= labels.time_us",
                    rows)

    def _writer(self) -> sqlite3.Connection:
        cached = getattr(self._local, "db", None)
        if cached is None or cached[0] != os.getpid():  # a forked child must not share its parent's handle
            cached = (os.getpid(), self._connect())
            self._local.db = cached
        return cached[1]

    def _write(self, sql: str, rows: list[tuple]) -> None:
        try:
            db = self._writer()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._local.db = None  # e.g. the file was moved away: reconnect on the next write
            raise TelemetryUnavailable(f"telemetry store {self.path} cannot be written: {exc}") from exc

    def read_window(self, endpoint: str, start: datetime, end: datetime,
                    deployment: str | None = None) -> "pa.Table":
        """Raw rows of [start, end) in time order with the latest label joined (null until it arrives).

        Read through ADBC straight into Arrow columns: no Python object per cell (3x faster than sqlite3 here).
        A store that cannot be opened is retried for `busy_timeout_s`, then raises TelemetryUnavailable.
        """
        import adbc_driver_manager
        import adbc_driver_sqlite.dbapi as adbc

        def read() -> "pa.Table":
            with closing(adbc.connect(f"{self.path.resolve().as_uri()}?mode=ro")) as db, \
                    closing(db.cursor()) as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                cursor.execute(_WINDOW_SQL, (endpoint, micros(start), micros(end), deployment, deployment))
                return _typed(cursor.fetch_arrow_table())

        try:
            return retry_transient(read, on=(adbc_driver_manager.Error,), within=self.busy_timeout_s, base=0.05,
                                   cap=0.05, what=f"reading {self.path}")
        except adbc_driver_manager.Error as exc:
            raise TelemetryUnavailable(f"telemetry store {self.path} cannot be read: {exc}") from exc

    def deployment_health(self, endpoint: str, deployment: str, since: datetime, until: datetime) -> DeploymentHealth:
        rows = self._query("SELECT latency_ms, status_code FROM requests WHERE endpoint = ? AND deployment = ? "
                           "AND time_us >= ? AND time_us < ?", (endpoint, deployment, micros(since), micros(until)))
        errors = sum(1 for _, status in rows if status is not None and status >= 500)
        latencies = sorted(x for x, _ in rows if x is not None)
        return DeploymentHealth(requests=len(rows), errors=errors, error_rate=errors / len(rows) if rows else 0.0,
                                p95_latency_ms=_quantile(latencies, 0.95))

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        try:
            with closing(self._connect()) as db:
                return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise TelemetryUnavailable(f"telemetry store {self.path} cannot be read: {exc}") from exc


def _add_generation_column(db: sqlite3.Connection) -> None:
    """Stores made before generation fields existed get the column (empty for their rows)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    if "generation" not in columns:
        try:
            db.execute("ALTER TABLE requests ADD COLUMN generation TEXT")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise


def _typed(table: "pa.Table") -> "pa.Table":
    """An empty or all-null column comes back typed null: give every column its type."""
    import pyarrow as pa

    types = {"time_us": pa.int64(), "score": pa.float64(), "latency_ms": pa.float64(), "status_code": pa.int64()}
    schema = pa.schema([(name, types.get(name, pa.string())) for name in WINDOW_COLUMNS])
    return table.rename_columns(list(WINDOW_COLUMNS)).cast(schema)


@contextmanager
def gc_paused():
    """Millions of fresh tuples make the cyclic GC run over and over (x6 slower here); none of them form cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _quantile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), without importing numpy."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
