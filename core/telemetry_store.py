"""The local telemetry store: what the local endpoint and scoring scripts log, read back a window at a time.

Requests are kept as typed columns (core.telemetry_columns) in Parquet segments: one per write and hour,
merged into one file per hour as they accumulate, so a window of a million requests reads at close to the
speed of one Parquet file. SQLite (WAL) holds what must be transactional: one row per request (its id is
unique, so a retried write is stored once; latency and status answer health queries), the catalog of
segments, and the labels, which arrive later (even before their request) and where the latest one wins.
Each write of labels also writes the winners whose request is known to a Parquet segment per endpoint and
request hour (a label that came first joins one when its request is written), so a window's labels are read
as columns and joined (core.telemetry_segments), never fetched row by row. A segment is written inside the
transaction that catalogs it, so a reader sees it whole or not at all; rows written by older versions
(inputs as JSON text in SQLite) are still read, and their labels are copied to segments once, on opening.
The SQL (schema, upgrades, catalog queries) is in core.telemetry_catalog.
"""
from __future__ import annotations

import gc
import os
import sqlite3
import threading
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from core import telemetry_catalog as cat
from core import telemetry_segments as seg
from core.errors import TelemetryUnavailable
from core.files import write_atomic
from core.retry import retry_transient
from core.telemetry import DeploymentHealth, LabelRecord, RequestRecord, to_json_text
from core.telemetry_catalog import micros

if TYPE_CHECKING:
    import pyarrow as pa

COMPACT_AT = 16  # segments of one hour merged into one file once there are this many


class SqliteTelemetryStore:
    """Conforms to TelemetrySink and HealthReader. Safe across threads and processes (WAL; writes go through
    one connection per thread and process, kept open: closing a WAL connection checkpoints, ~6 ms a write).

    A request logged twice (a retried flush) is stored once; a label written again replaces an older one.
    Segments live in folders beside the database file (telemetry.sqlite -> telemetry.segments/ and, for
    labels, telemetry.labels/).
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.segments = self.path.with_name(self.path.stem + ".segments")
        self.labels = self.path.with_name(self.path.stem + ".labels")
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            cat.create(db)
        self._upgrade_labels()

    def _upgrade_labels(self) -> None:
        """A store of an older version: labels of its requests adopted, and its labels copied to segments
        once, by whoever opens it first."""
        with self._transaction("upgraded") as db, _uncommitted() as files:
            adopted = db.execute(cat.LABELS_ADOPT).fetchall()
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'label_segments'").fetchone():
                for statement in cat.LABEL_SEGMENTS.split(";"):
                    db.execute(statement)
                adopted = db.execute(cat.LABEL_ROWS).fetchall()
            self._add_label_segments(db, adopted, files)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Stores the records not stored yet, one segment per endpoint and hour, atomically with their ids."""
        written: dict[tuple[str, int], Path] = {}
        with self._transaction("written") as db, _uncommitted() as files:
            for (endpoint, hour), part in cat.partitions(cat.fresh_records(db, records)):
                files.append(self._add_segment(db, endpoint, hour, part))
                written[(endpoint, hour)] = files[-1]
            labelled = self._add_label_segments(db, db.execute(cat.LABELS_ADOPT).fetchall(), files)  # came first
        for endpoint, hour in written:
            self._compact_if_due(endpoint, hour)
        for endpoint, hour in labelled:
            self._compact_labels_if_due(endpoint, hour)
        for endpoint in {e for e, _ in written}:  # requests come in time order: earlier hours are done
            self._seal(endpoint, min(h for e, h in written if e == endpoint))

    def write_labels(self, labels: Sequence[LabelRecord]) -> None:
        """Stores each label unless a later one of its request is stored; the winners whose request is known
        go to label segments in the same transaction."""
        rows = [(x.request_id, to_json_text(x.label), micros(x.time)) for x in labels]
        with self._transaction("written") as db, _uncommitted() as files:
            db.executemany("INSERT INTO labels (request_id, label, time_us) VALUES (?,?,?) ON CONFLICT (request_id) "
                           "DO UPDATE SET label = excluded.label, time_us = excluded.time_us "
                           "WHERE excluded.time_us >= labels.time_us", rows)
            db.execute(cat.LABELS_ADOPT).fetchall()  # the labels' requests, where already written
            written = self._add_label_segments(db, cat.current_labels(db, [row[0] for row in rows]), files)
        for endpoint, hour in written:
            self._compact_labels_if_due(endpoint, hour)

    def _add_label_segments(self, db: sqlite3.Connection, rows: list[tuple], files: list[Path]) -> set:
        """(request_id, label, time_us, endpoint, request_us) rows -> one segment per endpoint and request hour
        (each file added to `files` once written); returns those (endpoint, hour)."""

        hours: dict[tuple[str, int], list[tuple]] = {}
        for row in rows:
            hours.setdefault((row[3], row[4] // cat.HOUR_US), []).append(row)
        for (endpoint, hour), part in hours.items():
            segment = db.execute("INSERT INTO label_segments (endpoint, hour, path, rows) VALUES (?, ?, '', ?)",
                                 (endpoint, hour, len(part))).lastrowid
            relative = f"{cat.folder(endpoint)}/{hour}/{segment}.parquet"
            db.execute("UPDATE label_segments SET path = ? WHERE id = ?", (relative, segment))
            table = seg.labels_table(part)
            files.append(write_atomic(self.labels / relative,
                                      lambda out, table=table: seg.write_parquet(table, out)))
        return set(hours)

    def _compact_labels_if_due(self, endpoint: str, hour: int) -> None:
        """One request hour's label segments merged into one (the latest label of each request) once there
        are COMPACT_AT of them: a logger writing labels a few at a time leaves many small files."""
        gone: list[str] = []
        with self._transaction("compacted") as db:
            rows = db.execute("SELECT id, path FROM label_segments WHERE endpoint = ? AND hour = ? ORDER BY id",
                              (endpoint, hour)).fetchall()
            if len(rows) < COMPACT_AT:
                return
            table = seg.latest_labels([str(self.labels / path) for _, path in rows])
            segment = db.execute("INSERT INTO label_segments (endpoint, hour, path, rows) VALUES (?, ?, '', ?)",
                                 (endpoint, hour, table.num_rows)).lastrowid
            relative = f"{cat.folder(endpoint)}/{hour}/{segment}.parquet"
            db.execute("UPDATE label_segments SET path = ? WHERE id = ?", (relative, segment))
            write_atomic(self.labels / relative, lambda out: seg.write_parquet(table, out))
            db.executemany("DELETE FROM label_segments WHERE id = ?", [(i,) for i, _ in rows])
            gone = [path for _, path in rows]
        for path in gone:  # after the commit: a reader holding the old catalog retries (see read_window)
            (self.labels / path).unlink(missing_ok=True)

    def _add_segment(self, db: sqlite3.Connection, endpoint: str, hour: int,
                     part: list[tuple[int, RequestRecord]]) -> Path:
        from core.telemetry_columns import records_table

        part.sort(key=lambda item: item[0])
        times = [t for t, _ in part]
        records = [r for _, r in part]
        segment = db.execute("INSERT INTO segments (endpoint, hour, path, rows, first_us, last_us) VALUES "
                             "(?, ?, '', ?, ?, ?)", (endpoint, hour, len(part), times[0], times[-1])).lastrowid
        relative = f"{cat.folder(endpoint)}/{hour}/{segment}.parquet"
        db.execute("UPDATE segments SET path = ? WHERE id = ?", (relative, segment))
        db.executemany("INSERT INTO requests (time_us, request_id, endpoint, deployment, model_version, score, "
                       "latency_ms, status_code, typed) VALUES (?,?,?,?,?,?,?,?,1)",
                       [(t, r.request_id, r.endpoint, r.deployment, r.model_version, r.score, float(r.latency_ms),
                         int(r.status_code)) for t, r in part])
        table = records_table(records, times)
        return write_atomic(self.segments / relative, lambda out: seg.write_parquet(table, out))

    def _seal(self, endpoint: str, before: int) -> None:
        """Earlier hours of the endpoint still in several segments are merged, one file each."""
        rows = self._query("SELECT hour FROM segments WHERE endpoint = ? AND hour < ? GROUP BY hour "
                           "HAVING COUNT(*) > 1", (endpoint, before))
        for (hour,) in rows:
            self._compact_if_due(endpoint, hour, at=2)

    def _compact_if_due(self, endpoint: str, hour: int, at: int = COMPACT_AT) -> None:
        """One hour's segments merged into one file (in time order) once there are `at` of them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        gone: list[str] = []
        with self._transaction("compacted") as db:
            rows = db.execute("SELECT id, path, rows FROM segments WHERE endpoint = ? AND hour = ?",
                              (endpoint, hour)).fetchall()
            if len(rows) < at:
                return
            table = pa.concat_tables([pq.read_table(self.segments / path) for _, path, _ in rows],
                                     promote_options="permissive").sort_by("time_us")
            times = table["time_us"]
            segment = db.execute("INSERT INTO segments (endpoint, hour, path, rows, first_us, last_us) VALUES "
                                 "(?, ?, '', ?, ?, ?)", (endpoint, hour, table.num_rows, times[0].as_py(),
                                                          times[-1].as_py())).lastrowid
            relative = f"{cat.folder(endpoint)}/{hour}/{segment}.parquet"
            db.execute("UPDATE segments SET path = ? WHERE id = ?", (relative, segment))
            write_atomic(self.segments / relative, lambda out: seg.write_parquet(table, out))
            db.executemany("DELETE FROM segments WHERE id = ?", [(i,) for i, _, _ in rows])
            gone = [path for _, path, _ in rows]
        for path in gone:  # after the commit: a reader holding the old catalog retries (see read_window)
            (self.segments / path).unlink(missing_ok=True)

    def _writer(self) -> sqlite3.Connection:
        cached = getattr(self._local, "db", None)
        if cached is None or cached[0] != os.getpid():  # a forked child must not share its parent's handle
            cached = (os.getpid(), self._connect())
            self._local.db = cached
        return cached[1]

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            db = self._writer()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._local.db = None  # e.g. the file was moved away: reconnect on the next write
            raise TelemetryUnavailable(f"telemetry store {self.path} cannot be {what}: {exc}") from exc

    def read_window(self, endpoint: str, start: datetime, end: datetime, deployment: str | None = None, *,
                    fraction: float = 1.0, seed: int = 0) -> "pa.Table":
        """Rows of [start, end) in time order with the latest label joined (null until it arrives): the fixed
        columns (time_us, request_id, deployment, model_version, score, latency_ms, status_code, prediction,
        prediction_json, label), the typed input columns, and `inputs` (JSON text) for rows of older versions.
        With `fraction` < 1, a uniform sample: each row kept with that probability (seeded), read a chunk at a
        time, so memory holds the sample, not the window.

        A store that cannot be opened, or a segment merged away while being read, is retried for
        `busy_timeout_s`, then raises TelemetryUnavailable.
        """
        span = (endpoint, micros(start), micros(end), deployment)
        sample = None if fraction >= 1 else (fraction, seed)
        try:
            return retry_transient(lambda: self._read(*span, sample), on=(sqlite3.OperationalError, FileNotFoundError),
                                   within=self.busy_timeout_s, base=0.05, cap=0.05, what=f"reading {self.path}")
        except (sqlite3.OperationalError, FileNotFoundError) as exc:
            raise TelemetryUnavailable(f"telemetry store {self.path} cannot be read: {exc}") from exc

    def _read(self, endpoint: str, start_us: int, end_us: int, deployment: str | None,
              sample: tuple[float, int] | None) -> "pa.Table":
        import pyarrow as pa

        keep = _sampler(*sample) if sample else None  # afresh on a retry: the same rows
        paths, legacy, label_paths = self._catalog(endpoint, start_us, end_us, deployment, with_labels=True)
        files = [str(self.segments / path) for path in paths]
        if keep is None:
            parts = [seg.read_segments(files)] if paths else []
        else:
            parts = [seg.sample_segments(files, keep)] if paths else []
            legacy = keep(legacy)
        if legacy.num_rows:  # rows of an older version: plain text columns, so the segments' become plain too
            fields = seg.fixed_fields()
            parts = [seg.plain_text(part) for part in parts]
            parts.append(legacy.cast(pa.schema([fields.get(f.name, pa.field(f.name, pa.string()))
                                                for f in legacy.schema])))
        table = seg.in_window(pa.concat_tables(parts, promote_options="permissive") if parts else seg.empty(),
                          start_us, end_us, deployment)
        if (len(parts) > 1 or keep is not None) and not seg.ascending(table["time_us"]):
            table = table.sort_by("time_us")
        hours = [hour for _, hour in label_paths]  # one segment per hour: no request is labelled twice
        labels = seg.latest_labels([str(self.labels / path) for path, _ in label_paths], start_us, end_us,
                                   distinct=len(set(hours)) == len(hours))
        return seg.with_fixed_columns(table.append_column("label", seg.join_labels(table, labels)))

    def iter_window(self, endpoint: str, start: datetime, end: datetime, deployment: str | None = None,
                    batch_rows: int = 1 << 20) -> Iterator["pa.Table"]:
        """The window's rows in chunks of at most `batch_rows` (in no particular order, labels not joined):
        memory stays at one chunk whatever the window's size. Rows of older versions come as a last chunk."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        start_us, end_us = micros(start), micros(end)
        paths, legacy, _ = self._catalog(endpoint, start_us, end_us, deployment, with_labels=False)
        for path in paths:
            for batch in pq.ParquetFile(self.segments / path).iter_batches(batch_size=batch_rows):
                keep = pc.and_(pc.greater_equal(batch["time_us"], start_us), pc.less(batch["time_us"], end_us))
                if deployment is not None:
                    keep = pc.and_(keep, pc.equal(batch["deployment"], deployment))
                yield pa.Table.from_batches([batch]).filter(keep)
        if legacy.num_rows:
            yield legacy

    def _catalog(self, endpoint: str, start_us: int, end_us: int, deployment: str | None,
                 with_labels: bool) -> tuple[list[str], "pa.Table", list[tuple[str, int]]]:
        """The window's segment paths, rows of older versions and label segments (path, request hour), from one
        snapshot.

        Read with the same SQLite library the writers use: a second copy of SQLite in the process (an ADBC
        driver) drops the writers' POSIX locks when it closes the file, and readers then crash (SIGBUS) on a
        WAL index being rebuilt under them."""
        import pyarrow as pa

        uri = f"{self.path.resolve().as_uri()}?mode=rw"  # never creates a missing store
        with closing(sqlite3.connect(uri, uri=True, timeout=self.busy_timeout_s, isolation_level=None)) as db:
            db.execute("BEGIN")  # one snapshot: a merge committed between two queries is not half seen
            first, last = start_us // cat.HOUR_US, (end_us - 1) // cat.HOUR_US
            paths = [row[0] for row in db.execute(cat.SEGMENTS_SQL, (endpoint, first, last, start_us, end_us))]
            legacy = cat.arrow_rows(db.execute(cat.LEGACY_SQL, (endpoint, start_us, end_us, deployment, deployment)),
                                    {**dict.fromkeys(("time_us", "status_code"), pa.int64()),
                                     **dict.fromkeys(("score", "latency_ms"), pa.float64())})
            labels = db.execute(cat.LABEL_SEGMENTS_SQL, (endpoint, first, last)).fetchall() if with_labels else []
            db.execute("COMMIT")
        return paths, legacy, labels

    def count_window(self, endpoint: str, start: datetime, end: datetime, deployment: str | None = None) -> int:
        """How many requests [start, end) holds, no segment read. A window of whole hours of every deployment
        (the usual check) is counted from the catalog, each segment holding one hour's rows, plus the rows of
        older versions (a partial index): a range of the requests index costs 0.07 s per million rows, over a
        second the first time a process reads it. Any other window counts that range."""
        start_us, end_us = micros(start), micros(end)
        if deployment is None and start_us % cat.HOUR_US == 0 and end_us % cat.HOUR_US == 0:
            return self._query(cat.COUNT_HOURS_SQL, (endpoint, start_us // cat.HOUR_US, end_us // cat.HOUR_US,
                                                  endpoint, start_us, end_us))[0][0]
        return self._query("SELECT COUNT(*) FROM requests WHERE endpoint = ? AND time_us >= ? AND time_us < ? "
                           "AND (? IS NULL OR deployment = ?)",
                           (endpoint, start_us, end_us, deployment, deployment))[0][0]

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


def _sampler(fraction: float, seed: int) -> Callable[["pa.Table"], "pa.Table"]:
    """Keeps each row of the tables it is given with probability `fraction`, the same rows for the same seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return lambda table: table.filter(rng.random(table.num_rows) < fraction)


@contextmanager
def _uncommitted() -> Iterator[list[Path]]:
    """Files written for a transaction, removed if it fails: never cataloged, nothing would read them."""
    files: list[Path] = []
    try:
        yield files
    except BaseException:
        for path in files:
            path.unlink(missing_ok=True)
        raise


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
