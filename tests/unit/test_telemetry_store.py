"""The local store's typed segments: compaction, readers during compaction, rows of an older version."""
from __future__ import annotations

import dataclasses
import math
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from core.telemetry import LabelRecord, RequestRecord
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
            CREATE UNIQUE INDEX requests_request_id ON requests (request_id);
            CREATE TABLE labels (request_id TEXT PRIMARY KEY, label TEXT, time_us INTEGER NOT NULL);""")
        db.execute("INSERT INTO requests VALUES (?, 'old-1', 'ep', 'blue', '1', ?, '1', 0.5, 2.0, 200)",
                   (micros(T0 + timedelta(seconds=30)), '{"distance": 7.5, "origin": "LGA"}'))
        db.execute("INSERT INTO labels VALUES ('old-1', '1', ?)", (micros(T0 + timedelta(days=1)),))
    store = SqliteTelemetryStore(path)  # upgrades the schema in place
    store.write(records(1, 2, T0 + timedelta(minutes=1)) + [records(0, 1, T0)[0]])
    store.write([RequestRecord(time=T0, request_id="old-1", endpoint="ep", deployment="blue", model_version="1",
                               inputs={}, prediction=0, score=None, latency_ms=1.0, status_code=200)])  # a retry
    frame = LocalTelemetrySource(store, FEATURES).fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=1))).frame
    assert list(frame.request_id) == ["r0", "old-1", "r1", "r2"]  # in time order, the retry stored once
    assert list(frame.distance) == [0.0, 7.5, 1.0, 2.0] and list(frame.origin) == ["JFK", "LGA", "JFK", "JFK"]
    assert frame.label.tolist()[1] == 1  # its label, kept in SQLite by that version, is read too
    store.write(records(3, 2, T0 + timedelta(minutes=59, seconds=59)))  # r4 falls in the next hour
    hour, first_hours = Window(T0, T0 + timedelta(hours=1)), Window(T0, T0 + timedelta(hours=2))
    source = LocalTelemetrySource(store, FEATURES)
    assert source.count(EndpointRef("ep"), hour) == 5  # from the catalog (whole hours): typed and older rows
    assert source.count(EndpointRef("ep"), first_hours) == 6
    assert source.count(EndpointRef("ep"), Window(T0 + timedelta(seconds=1), hour.end)) == 4  # from the index
    assert source.count(EndpointRef("ep", "blue"), hour) == 5


def label_files(store: SqliteTelemetryStore) -> list:
    return sorted(store.labels.rglob("*.parquet"))


def test_labels_before_their_requests_and_late_corrections_are_joined_across_merges(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    day = T0 + timedelta(days=1)
    store.write_labels([LabelRecord(f"r{i}", i % 2, day) for i in range(3)])  # the requests are not there yet
    assert not label_files(store)
    store.write(records(0, 5, T0))
    for k in range(COMPACT_AT + 2):  # corrections of r3 one at a time: the last (latest) one wins
        store.write_labels([LabelRecord("r3", k, day + timedelta(minutes=k))])
    store.write_labels([LabelRecord("r0", 7, T0 + timedelta(hours=1))])  # older than r0's label: ignored
    assert len(label_files(store)) < COMPACT_AT  # small label writes are merged
    frame = LocalTelemetrySource(store, FEATURES).fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=1))).frame
    labels = frame.set_index("request_id").label
    assert labels.tolist()[:4] == [0, 1, 0, COMPACT_AT + 1] and math.isnan(labels["r4"])


def test_a_failed_label_write_leaves_no_label_and_no_file_behind(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    store.write(records(0, 3, T0) + records(3, 1, T0 + timedelta(hours=1)))
    day = T0 + timedelta(days=1)
    store.write_labels([LabelRecord("r0", 0, day)])
    before = label_files(store)
    blocked = before[0].parent.with_name(str(int(before[0].parent.name) + 1))
    blocked.write_text("")  # the second hour's folder cannot be made: its segment fails to write
    with pytest.raises(OSError):
        store.write_labels([LabelRecord("r0", 1, day + timedelta(hours=1)), LabelRecord("r3", 1, day)])
    assert label_files(store) == before
    blocked.unlink()
    window = Window(T0, T0 + timedelta(hours=2))
    assert LocalTelemetrySource(store, FEATURES).fetch(EndpointRef("ep"), window).frame.label.tolist()[0] == 0
    store.write_labels([LabelRecord("r3", 1, day)])  # the store works on
    assert LocalTelemetrySource(store, FEATURES).fetch(EndpointRef("ep"), window).frame.label.tolist()[3] == 1


def test_labels_find_their_rows_among_requests_of_one_instant_and_one_deployment(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    at = T0 + timedelta(minutes=30)
    same = [dataclasses.replace(r, time=at, deployment=d) for r, d in zip(records(0, 4, T0), "gbgb", strict=True)]
    store.write(records(10, 3, T0) + same)
    store.write_labels([LabelRecord(f"r{i}", i, T0 + timedelta(days=1)) for i in (0, 1, 3, 11)])
    source = LocalTelemetrySource(store, FEATURES)
    labels = source.fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=1))).frame.set_index("request_id").label
    assert [labels[f"r{i}"] for i in (0, 1, 3, 11)] == [0, 1, 3, 11] and labels.isna().sum() == 3
    green = source.fetch(EndpointRef("ep", "g"), Window(T0, T0 + timedelta(hours=1))).frame
    assert green.request_id.tolist() == ["r0", "r2"] and green.label[0] == 0 and math.isnan(green.label[1])


def test_without_features_text_keys_keep_their_gaps_across_segments(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    first = records(0, 3, T0)
    first[1] = dataclasses.replace(first[1], inputs={"distance": 1.0, "origin": None})
    store.write(first)
    store.write(records(3, 2, T0 + timedelta(hours=1), origin="LGA"))  # another file, another dictionary
    frame = LocalTelemetrySource(store).fetch(EndpointRef("ep"), Window(T0, T0 + timedelta(hours=2))).frame
    assert [None if pd.isna(v) else v for v in frame.origin] == ["JFK", None, "JFK", "LGA", "LGA"]
    assert list(frame.distance) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_sample_of_a_window_is_uniform_seeded_in_time_order_and_labelled(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    for k in range(4):  # several segments over two hours
        store.write(records(500 * k, 500, T0 + timedelta(minutes=30 * k)))
    store.write_labels([LabelRecord(f"r{i}", i % 3, T0 + timedelta(days=1)) for i in range(0, 2000, 2)])
    window = Window(T0, T0 + timedelta(hours=2))
    whole = store.read_window("ep", window.start, window.end)
    sample = store.read_window("ep", window.start, window.end, fraction=0.25, seed=7)
    assert 400 < sample.num_rows < 600 and sample.schema.names == whole.schema.names
    assert sample.to_pylist() == store.read_window("ep", window.start, window.end, fraction=0.25, seed=7).to_pylist()
    ids = sample["request_id"].to_pylist()
    assert sample["time_us"].to_pylist() == sorted(sample["time_us"].to_pylist())
    assert {int(i[1:]) // 1000 for i in ids} == {0, 1}  # both hours drawn from
    labels = dict(zip(ids, sample["label"].to_pylist(), strict=True))
    assert all(labels[i] == (str(int(i[1:]) % 3) if int(i[1:]) % 2 == 0 else None) for i in ids)


def test_labels_of_many_hours_join_whether_or_not_an_hour_holds_a_correction(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    store.write([r for h in range(3) for r in records(10 * h, 2, T0 + timedelta(hours=h))])
    day = T0 + timedelta(days=1)
    store.write_labels([LabelRecord(f"r{10 * h + i}", ["late", "on-time"][i], day) for h in range(3) for i in (0, 1)])
    source, window = LocalTelemetrySource(store, FEATURES), Window(T0, T0 + timedelta(hours=3))
    expected = ["late", "on-time"] * 3  # one label segment per hour: joined without picking winners
    assert source.fetch(EndpointRef("ep"), window).frame.label.tolist() == expected
    store.write_labels([LabelRecord("r1", "late", day + timedelta(hours=1))])  # hour 0 now holds two segments
    assert len(label_files(store)) == 4
    assert source.fetch(EndpointRef("ep"), window).frame.label.tolist() == ["late", "late"] + expected[2:]
