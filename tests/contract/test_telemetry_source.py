"""One contract, two TelemetrySources: the local SQLite store and Log Analytics through the real SDK (offline)."""
from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from core.errors import PermanentError, TelemetryUnavailable
from core.telemetry import LabelRecord, RequestRecord
from core.telemetry_store import SqliteTelemetryStore, micros
from core.types import EndpointRef, Window
from monitors.telemetry.local import LocalTelemetrySource
from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource
from tests.contract.loganalytics_fake import FakeCredential, FakeLogAnalytics

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOUR = Window(T0, T0 + timedelta(hours=1))
EP = EndpointRef("flights-delay")
FEATURES = {"distance": "numeric", "dep_delay": "numeric", "origin": "categorical"}


def record(i: int, at: datetime, endpoint: str = EP.name, **inputs) -> RequestRecord:
    values = {"distance": 100.0 + i, "dep_delay": float(i % 7), "origin": ["JFK", "LGA", "EWR"][i % 3], **inputs}
    return RequestRecord(time=at, request_id=f"req-{i}", endpoint=endpoint, deployment="blue", model_version="3",
                         inputs=values, prediction=float(i % 2), score=0.25, latency_ms=12.5, status_code=200)


class LocalHarness:
    name = "local"

    def __init__(self, tmp_path) -> None:
        self.store = SqliteTelemetryStore(tmp_path / "telemetry.sqlite", busy_timeout_s=2.0)

    def add(self, records):
        self.store.write(records)

    def add_labels(self, labels):
        self.store.write_labels(labels)

    def add_raw_inputs(self, request_id: str, at: datetime, inputs_text: str) -> None:
        """A row written by a foreign or buggy writer (or an older version, which kept inputs as JSON text in
        SQLite): inputs text is whatever it is."""
        with closing(sqlite3.connect(self.store.path)) as db, db:
            db.execute("INSERT INTO requests (time_us, request_id, endpoint, deployment, model_version, inputs, "
                       "prediction, score, latency_ms, status_code) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (micros(at), request_id, EP.name, "blue", "3", inputs_text, "1", 0.5, 10.0, 200))

    def source(self, max_rows: int = 500_000, features=FEATURES):
        return LocalTelemetrySource(self.store, features)

    @contextmanager
    def _unreachable(self, seconds: float | None):
        """The store's file is gone (a volume unmounted) for `seconds`, or for the whole block."""
        away = self.store.path.with_suffix(".away")
        self.store.path.rename(away)
        timer = threading.Timer(seconds, away.rename, (self.store.path,)) if seconds is not None else None
        if timer:
            timer.start()
        try:
            yield
        finally:
            if timer:
                timer.join()
            else:
                away.rename(self.store.path)

    def transient_fault(self):
        return self._unreachable(0.3)  # back within the busy timeout: the read waits it out

    def incomplete_answer(self):
        self.store.busy_timeout_s = 0.2
        return self._unreachable(None)

    def queries(self):
        return None

    def health(self):
        return self.store


class LogAnalyticsHarness:
    name = "loganalytics"

    def __init__(self, tmp_path) -> None:
        self.fake = FakeLogAnalytics("ws-1")

    def add(self, records):
        self.fake.add(records)

    def add_labels(self, labels):
        self.fake.add_labels(labels)

    def add_raw_inputs(self, request_id: str, at: datetime, inputs_text: str) -> None:
        self.fake.add_raw({"TimeGenerated": at.isoformat(), "RequestId": request_id, "Endpoint": EP.name,
                           "Deployment": "blue", "ModelVersion": "3", "Inputs": inputs_text, "Prediction": 1,
                           "Score": 0.5, "LatencyMs": 10.0, "StatusCode": 200})

    def source(self, max_rows: int = 500_000, features=FEATURES):
        self.fake.row_cap = max_rows
        return LogAnalyticsTelemetrySource("ws-1", credential=FakeCredential(), transport=self.fake,
                                           features=features, max_rows_per_query=max_rows,
                                           retry_backoff_factor=0.01, now=lambda: T0 + timedelta(days=3))

    @contextmanager
    def transient_fault(self):
        self.fake.fail_next(429, {"Retry-After": "0.3"})
        yield

    @contextmanager
    def incomplete_answer(self):
        self.fake.fail_next(200, body="partial", kind="rows")
        yield

    def queries(self):
        return self.fake.data_queries()

    def health(self):
        return self.source()


@pytest.fixture(params=[LocalHarness, LogAnalyticsHarness], ids=lambda h: h.name)
def harness(request, tmp_path):
    return request.param(tmp_path)


def test_empty_window_gives_an_empty_batch_with_the_schema(harness):
    harness.add([record(1, T0 - timedelta(minutes=1))])
    batch = harness.source().fetch(EP, HOUR)
    assert batch.rows == 0 and batch.rejected == {}
    for column in ("request_id", "time", "latency_ms", "status_code", "prediction", "score", "label", *FEATURES):
        assert column in batch.frame.columns


def test_normal_window_returns_its_rows_in_time_order_half_open(harness):
    rows = [record(i, T0 + timedelta(minutes=59 - i)) for i in range(60)]
    harness.add(rows + [record(100, HOUR.end), record(101, T0 - timedelta(microseconds=1)),
                        record(102, T0 + timedelta(minutes=5), endpoint="other-endpoint")])
    batch = harness.source().fetch(EP, HOUR)
    frame = batch.frame
    assert batch.rows == 60
    assert set(frame.request_id) == {f"req-{i}" for i in range(60)}
    assert frame.time.is_monotonic_increasing and str(frame.time.dt.tz) == "UTC"
    first = frame.iloc[0]  # req-59 at T0
    assert first.request_id == "req-59" and first.time == T0
    assert (first.distance, first.dep_delay, first.origin) == (159.0, 3.0, "EWR")
    assert (first.prediction, first.score, first.latency_ms, first.status_code) == (1.0, 0.25, 12.5, 200)
    assert first.deployment == "blue" and first.model_version == "3"


def test_large_window_is_read_in_slices_without_gaps_or_duplicates(harness):
    # Skewed: most traffic in one minute, many rows on the same instants, rows exactly on likely slice borders.
    busy = [record(i, T0 + timedelta(minutes=30, seconds=i % 20)) for i in range(300)]
    quiet = [record(1000 + i, T0 + timedelta(minutes=6 * i)) for i in range(10)]
    harness.add(busy + quiet)
    batch = harness.source(max_rows=40).fetch(EP, HOUR)
    assert batch.rows == 310
    assert batch.frame.request_id.is_unique
    queries = harness.queries()
    if queries is not None:  # Log Analytics: several bounded queries, each under the cap
        assert len(queries) > 8
        assert all("timespan" in q and "TimeGenerated >= datetime(" in q["query"] for q in queries)


def test_an_incomplete_answer_raises_rather_than_returning_a_short_batch(harness):
    harness.add([record(i, T0 + timedelta(minutes=i)) for i in range(10)])
    source = harness.source()
    with harness.incomplete_answer(), pytest.raises(TelemetryUnavailable):
        source.fetch(EP, HOUR)
    assert source.fetch(EP, HOUR).rows == 10  # and the next attempt gets everything


def test_a_transient_refusal_is_waited_out(harness):
    harness.add([record(i, T0 + timedelta(minutes=i)) for i in range(10)])
    source = harness.source()
    started = time.monotonic()
    with harness.transient_fault():
        batch = source.fetch(EP, HOUR)
    assert batch.rows == 10
    assert time.monotonic() - started >= 0.25  # the refusal was honoured, not raced through


def test_bad_rows_are_counted_by_reason_with_examples_and_never_abort(harness):
    harness.add([record(i, T0 + timedelta(minutes=i)) for i in range(20)])
    harness.add([record(50, T0 + timedelta(minutes=21), dep_delay=float("nan")),
                 record(51, T0 + timedelta(minutes=22), distance="far"),
                 record(52, T0 + timedelta(minutes=23), origin={"nested": 1})])
    at = T0 + timedelta(minutes=24)
    harness.add_raw_inputs("req-60", at, '{"distance": 1.0, "dep_delay": ')
    harness.add_raw_inputs("req-61", at, json.dumps({"distance": 1.0, "origin": "JFK"}))
    harness.add_raw_inputs("req-62", at, "[1, 2]")
    harness.add_raw_inputs("req-63", at, json.dumps({"distance": "Infinity", "dep_delay": 1, "origin": "JFK"}))
    batch = harness.source().fetch(EP, HOUR)
    assert batch.rows == 20
    assert batch.rejected == {"non_finite": 2, "wrong_type": 3, "unparsable_json": 1, "missing_feature": 1}
    assert len(batch.rejected_examples) == 5
    by_id = {e["request_id"]: e for e in batch.rejected_examples}
    assert "dep_delay" in by_id["req-50"]["detail"] and "distance" in by_id["req-51"]["detail"]
    assert not set(batch.frame.request_id) & {"req-50", "req-51", "req-52", "req-60", "req-61", "req-62"}


def test_without_a_feature_spec_every_input_key_becomes_a_column(harness):
    harness.add([record(i, T0 + timedelta(minutes=i)) for i in range(5)])
    frame = harness.source(features=None).fetch(EP, HOUR).frame
    assert list(frame.distance) == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert list(frame.origin) == ["JFK", "LGA", "EWR", "JFK", "LGA"]
    harness.add_raw_inputs("req-90", T0 + timedelta(minutes=30), "not json")
    harness.add_raw_inputs("req-91", T0 + timedelta(minutes=31), json.dumps({"distance": "far", "dep_delay": 1}))
    batch = harness.source(features=None).fetch(EP, HOUR)
    assert batch.rejected == {"unparsable_json": 1} and batch.rows == 6
    assert batch.frame.set_index("request_id").distance["req-91"] == "far"


def test_late_labels_are_joined_when_they_arrive(harness):
    harness.add([record(i, T0 + timedelta(minutes=i)) for i in range(5)])
    source = harness.source()
    before = source.fetch(EP, HOUR)
    assert before.frame.label.isna().all()
    harness.add_labels([LabelRecord("req-1", 1, T0 + timedelta(days=1)),
                        LabelRecord("req-3", 0, T0 + timedelta(days=1))])
    harness.add_labels([LabelRecord("req-3", 1, T0 + timedelta(days=2))])  # a correction: the latest wins
    labels = source.fetch(EP, HOUR).frame.set_index("request_id").label
    assert labels["req-1"] == 1 and labels["req-3"] == 1
    assert math.isnan(labels["req-0"]) and math.isnan(labels["req-4"])


def test_deployment_health_counts_server_errors_and_p95_latency(harness):
    rows = [RequestRecord(time=T0 + timedelta(seconds=i), request_id=f"h-{i}", endpoint=EP.name,
                          deployment="green" if i % 2 else "blue", model_version="4", inputs={}, prediction=None,
                          score=None, latency_ms=float(i), status_code=500 if i % 10 == 1 else 200)
            for i in range(200)]
    harness.add(rows)
    health = harness.health().deployment_health(EP.name, "green", HOUR.start, HOUR.end)
    assert (health.requests, health.errors, health.error_rate) == (100, 20, 0.2)
    assert health.p95_latency_ms == pytest.approx(189.1)  # linear interpolation over 1, 3, ..., 199
    empty = harness.health().deployment_health(EP.name, "red", HOUR.start, HOUR.end)
    assert (empty.requests, empty.errors, empty.error_rate, empty.p95_latency_ms) == (0, 0, 0.0, None)


# --- Log Analytics specifics: retries, KQL safety, auth ---------------------------------------------------------

def la_source(fake: FakeLogAnalytics, **kwargs) -> LogAnalyticsTelemetrySource:
    return LogAnalyticsTelemetrySource("ws-1", credential=FakeCredential(), transport=fake, features=FEATURES,
                                       retry_backoff_factor=0.01, now=lambda: T0 + timedelta(days=3), **kwargs)


def test_retry_after_is_honoured_and_server_errors_surface_as_retryable():
    fake = FakeLogAnalytics("ws-1")
    fake.add([record(i, T0 + timedelta(minutes=i)) for i in range(3)])
    fake.fail_next(429, {"Retry-After": "0.4"}, kind="rows")
    assert la_source(fake).fetch(EP, HOUR).rows == 3
    (t_429, status, _), (t_next, _, _) = [e for e in fake.log if "| count" not in e[2]["query"]]
    assert status == 429 and t_next - t_429 >= 0.39
    fake.outage = True
    with pytest.raises(TelemetryUnavailable, match="503"):
        la_source(fake).fetch(EP, HOUR)
    assert sum(1 for _, s, _ in fake.log if s == 503) == 5  # first try + 4 retries, then give up


def test_throttling_without_retry_after_and_bad_gateways_are_retried_on_every_query():
    fake = FakeLogAnalytics("ws-1")
    fake.add([record(i, T0 + timedelta(minutes=i)) for i in range(3)])
    fake.fail_next(429, kind="count")
    fake.fail_next(502, kind="rows")
    assert la_source(fake).fetch(EP, HOUR).rows == 3
    assert [s for _, s, _ in fake.log] == [429, 200, 502, 200]


def test_a_bad_query_is_permanent_and_names_the_status():
    fake = FakeLogAnalytics("ws-1")
    fake.fail_next(400, body={"error": {"code": "BadArgumentError", "message": "Syntax error"}})
    with pytest.raises(PermanentError, match="400"):
        la_source(fake).fetch(EP, HOUR)


def test_endpoint_names_are_escaped_in_kql():
    fake = FakeLogAnalytics("ws-1")
    tricky = 'x" or 1==1 //'
    fake.add([record(1, T0, endpoint=tricky), record(2, T0)])
    batch = la_source(fake).fetch(EndpointRef(tricky), HOUR)
    assert list(batch.frame.request_id) == ["req-1"]
    assert '\\"' in fake.log[-1][2]["query"]


def test_a_deployment_of_the_endpoint_can_be_read_alone(harness):
    rows = [record(i, T0 + timedelta(minutes=i)) for i in range(6)]
    green = [RequestRecord(**{**r.__dict__, "deployment": "green", "request_id": f"g-{i}"}) for i, r in enumerate(rows)]
    harness.add(rows + green)
    batch = harness.source().fetch(EndpointRef(EP.name, "green"), HOUR)
    assert batch.rows == 6 and set(batch.frame.deployment) == {"green"}
    assert harness.source().fetch(EP, HOUR).rows == 12


def chat(i: int, at: datetime, **generation) -> RequestRecord:
    fields = {"prompt": f"question {i}?", "response": f"answer {i}.", "tokens_in": 10 + i, "tokens_out": 20 + i,
              "model": "gpt-4o-mini", "finish_reason": "stop", **generation}
    return RequestRecord(time=at, request_id=f"chat-{i}", endpoint=EP.name, deployment="blue", model_version="3",
                         inputs={"channel": "web"}, prediction=None, score=None, latency_ms=800.0, status_code=200,
                         generation=fields)


def test_generation_fields_come_back_as_columns_and_can_be_text_features(harness):
    harness.add([chat(i, T0 + timedelta(minutes=i)) for i in range(4)])
    harness.add([chat(9, T0 + timedelta(minutes=9), context="the manual, page 3", ground_truth="answer nine.",
                      finish_reason="content_filter", response=None)])
    batch = harness.source(features={"channel": "categorical", "prompt": "text", "tokens_out": "numeric"}).fetch(
        EP, HOUR)
    frame = batch.frame.set_index("request_id")
    assert batch.rejected == {} and batch.rows == 5
    assert frame.prompt["chat-2"] == "question 2?" and frame.response["chat-2"] == "answer 2."
    assert frame.tokens_in["chat-3"] == 13.0 and frame.tokens_out["chat-0"] == 20.0
    assert frame.generation_model["chat-1"] == "gpt-4o-mini" and frame.finish_reason["chat-9"] == "content_filter"
    assert frame.response["chat-9"] is None and frame.context["chat-9"] == "the manual, page 3"
    assert frame.ground_truth["chat-9"] == "answer nine." and frame.ground_truth["chat-0"] is None
    assert list(frame.channel) == ["web"] * 5


def test_a_classifier_window_gets_no_generation_columns(harness):
    harness.add([record(i, T0 + timedelta(minutes=i)) for i in range(3)])
    frame = harness.source().fetch(EP, HOUR).frame
    assert "prompt" not in frame and "tokens_in" not in frame and frame.shape[0] == 3


def test_a_malformed_generation_record_rejects_its_row_with_a_reason():
    from monitors.telemetry.convert import build_batch

    cells = ['{"prompt": "fine", "tokens_in": 3}', '"just text"', '{"tokens_out": -2}', '{"response": 7}', None]
    raw = {"request_id": [f"r{i}" for i in range(5)], "time": [T0.isoformat()] * 5, "deployment": ["blue"] * 5,
           "model_version": ["3"] * 5, "latency_ms": [1.0] * 5, "status_code": [200] * 5, "inputs": ["{}"] * 5,
           "prediction": [None] * 5, "score": [None] * 5, "label": [None] * 5, "generation": cells}
    batch = build_batch(EP, HOUR, raw, {"prompt": "text"})
    assert batch.rejected == {"wrong_type": 3}
    assert list(batch.frame.request_id) == ["r0", "r4"] and list(batch.frame.prompt) == ["fine", None]
    details = sorted(e["detail"] for e in batch.rejected_examples)
    assert details == ["generation is not a JSON object", "generation.response must be text",
                       "generation.tokens_out must be a non-negative number"]


def test_a_window_is_counted_and_sampled_the_same_rows_each_time_labels_joined(harness):
    harness.add([record(i, T0 + timedelta(seconds=3 * i)) for i in range(1000)])
    harness.add_labels([LabelRecord(f"req-{i}", i % 2, T0 + timedelta(days=1)) for i in range(0, 1000, 4)])
    source = harness.source(max_rows=300)  # Log Analytics: the sample is read in slices under the row cap
    whole = source.fetch(EP, HOUR).frame.set_index("request_id")
    assert source.count(EP, HOUR) == len(whole) == 1000
    sample = source.sample(EP, HOUR, 0.3, seed=5)
    assert 220 < sample.rows < 380 and sample.frame.time.is_monotonic_increasing
    assert sample.frame.request_id.tolist() == source.sample(EP, HOUR, 0.3, seed=5).frame.request_id.tolist()
    assert sample.frame.request_id.tolist() != source.sample(EP, HOUR, 0.3, seed=6).frame.request_id.tolist()
    rows = sample.frame.set_index("request_id")
    assert rows.distance.equals(whole.distance[rows.index]) and rows.label.equals(whole.label[rows.index])
    assert rows.label.notna().sum() > 30
