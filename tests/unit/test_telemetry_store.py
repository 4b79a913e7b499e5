"""The local store's typed segments: compaction, readers during compaction, rows of an older version."""
from __future__ import annotations

import dataclasses
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone

from core.telemetry import RequestRecord
from core.telemetry_store import COMPACT_AT, SqliteTelemetryStore, micros
from core.types import EndpointRef, Window
from monitors.telemetry.local import LocalTelemetrySource

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
FEATURES = {"distance": "numeric", "origin": "categorical"}


def records(first: int, count: int, at: datetime, **inputs) -> list[RequestRecord]:
    return [RequestRecord(time=at + timedelta(seconds=i), request_id=f"r{first + i}", endpoint="ep", deployment="blue",
                          model_version="1", inputs={"distance": float(first + i), "origin": "JFK", **inputs},
                          prediction=1.0, score=0.5, latency_ms=2.0, status_code=200) for i in range(count)]


def segment_files(store: SqliteTelemetryStore) -> list:
    return sorted(store.segments.rglob("*.parquet"))


def test_an_hour_of_small_writes_is_merged_and_earlier_hours_are_sealed(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    for k in range(COMPACT_AT + 3):  # one hour, many small writes (a logger flushing every few seconds)
        store.write(records(10 * k, 10, T0 + timedelta(minutes=k)))
    assert len(segment_files(store)) == 4  # merged once at COMPACT_AT, three written since
    store.write(records(1000, 5, T0 + timedelta(hours=1)))  # the next hour starts: the first is sealed
    assert len(segment_files(store)) == 2
    batch = LocalTelemetrySource(store, FEATURES).fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=2)))
    assert batch.rows == 10 * (COMPACT_AT + 3) + 5 and batch.frame.request_id.is_unique
    assert batch.frame.time.is_monotonic_increasing and list(batch.frame.distance[:3]) == [0.0, 1.0, 2.0]


def test_readers_never_see_a_partial_or_doubled_window_while_writers_merge(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite", busy_timeout_s=10)
    source = LocalTelemetrySource(store, FEATURES)
    window, seen, errors = Window(T0, T0 + timedelta(hours=3)), [], []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                frame = source.fetch(EndpointRef("ep"), window).frame
                seen.append((len(frame), frame.request_id.is_unique))
            except Exception as exc:  # noqa: BLE001 - a reader's failure is what this test looks for
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for k in range(60):
        store.write(records(5 * k, 5, T0 + timedelta(minutes=3 * k)))
    done.set()
    reader.join()
    assert not errors and seen and all(unique for _, unique in seen)
    assert [n for n, _ in seen] == sorted(n for n, _ in seen) and all(n % 5 == 0 for n, _ in seen)
    assert source.fetch(EndpointRef("ep"), window).rows == 300


def test_rows_of_an_older_version_are_read_beside_typed_ones(tmp_path):
    path = tmp_path / "t.sqlite"
    with closing(sqlite3.connect(path)) as db, db:  # a store written by the version that kept JSON text
        db.executescript("""
            CREATE TABLE requests (time_us INTEGER NOT NULL, request_id TEXT NOT NULL, endpoint TEXT NOT NULL,
                deployment TEXT, model_version TEXT, inputs TEXT, prediction TEXT, score REAL, latency_ms REAL,
                status_code INTEGER);
            CREATE UNIQUE INDEX requests_request_id ON requests (request_id);""")
        db.execute("INSERT INTO requests VALUES (?, 'old-1', 'ep', 'blue', '1', ?, '1', 0.5, 2.0, 200)",
                   (micros(T0 + timedelta(seconds=30)), '{"distance": 7.5, "origin": "LGA"}'))
    store = SqliteTelemetryStore(path)  # upgrades the schema in place
    store.write(records(1, 2, T0 + timedelta(minutes=1)) + [records(0, 1, T0)[0]])
    store.write([RequestRecord(time=T0, request_id="old-1", endpoint="ep", deployment="blue", model_version="1",
                               inputs={}, prediction=0, score=None, latency_ms=1.0, status_code=200)])  # a retry
    frame = LocalTelemetrySource(store, FEATURES).fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=1))).frame
    assert list(frame.request_id) == ["r0", "old-1", "r1", "r2"]  # in time order, the retry stored once
    assert list(frame.distance) == [0.0, 7.5, 1.0, 2.0] and list(frame.origin) == ["JFK", "LGA", "JFK", "JFK"]


def test_without_features_text_keys_keep_their_gaps_across_segments(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    first = records(0, 3, T0)
    first[1] = dataclasses.replace(first[1], inputs={"distance": 1.0, "origin": None})
    store.write(first)
    store.write(records(3, 2, T0 + timedelta(hours=1), origin="LGA"))  # another file, another dictionary
    frame = LocalTelemetrySource(store).fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=2))).frame
    assert list(frame.origin) == ["JFK", None, "JFK", "LGA", "LGA"]
    assert list(frame.distance) == [0.0, 1.0, 2.0, 3.0, 4.0]
