"""What a scoring script's logger does: batches, survives a sink outage without losing records, picks its sink."""
from __future__ import annotations

import gzip
import io
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from core.errors import ConfigurationError, TelemetryUnavailable, ValidationFailed
from core.telemetry import LogsIngestionTelemetrySink, RequestLogger, RequestRecord
from core.telemetry_store import SqliteTelemetryStore

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def logger_for(sink, **kwargs) -> RequestLogger:
    return RequestLogger(sink, endpoint="flights", deployment="blue", model_version="3", **kwargs)


def test_records_are_written_in_batches_and_close_writes_the_rest(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    logger = logger_for(store, batch_size=3, flush_interval_s=3600)
    for i in range(7):
        logger.log(inputs={"distance": float(i)}, prediction=i % 2, score=0.5, latency_ms=3.0,
                   request_id=f"r{i}", time=T0 + timedelta(seconds=i))
    assert store.read_window("flights", T0, T0 + timedelta(hours=1)).num_rows == 6
    logger.label("r1", 1, time=T0 + timedelta(days=1))
    logger.close()
    table = store.read_window("flights", T0, T0 + timedelta(hours=1)).to_pydict()
    assert table["request_id"] == [f"r{i}" for i in range(7)]
    assert table["f:distance"][4] == 4.0  # inputs are typed columns, one per key and type
    assert table["label"][1] == "1" and table["label"][0] is None


class FlakySink:
    def __init__(self) -> None:
        self.down = True
        self.written: list[RequestRecord] = []

    def write(self, records):
        if self.down:
            raise TelemetryUnavailable("store is down")
        self.written.extend(records)

    def write_labels(self, labels):
        if self.down:
            raise TelemetryUnavailable("store is down")


def test_a_sink_outage_never_breaks_scoring_and_loses_nothing_within_the_buffer():
    sink = FlakySink()
    logger = logger_for(sink, batch_size=2, max_buffer=5)
    for i in range(4):
        logger.log(inputs={"x": i}, prediction=0, latency_ms=1.0, request_id=f"r{i}")  # flushes fail, no raise
    sink.down = False
    assert logger.flush() == 4
    assert [r.request_id for r in sink.written] == ["r0", "r1", "r2", "r3"]
    sink.down = True
    for i in range(4, 11):
        logger.log(inputs={"x": i}, prediction=0, latency_ms=1.0, request_id=f"r{i}")
    sink.down = False
    logger.flush()
    assert logger.dropped == 2  # the buffer holds 5: the two oldest went, and were counted
    assert [r.request_id for r in sink.written[4:]] == ["r6", "r7", "r8", "r9", "r10"]


def test_records_are_validated_naming_the_field():
    with pytest.raises(ValidationFailed) as naive:
        RequestRecord(time=datetime(2024, 1, 1), request_id="r", endpoint="e", deployment="d", model_version="1",
                      inputs={}, prediction=0, score=None, latency_ms=1.0, status_code=200)
    assert naive.value.field == "time"
    with pytest.raises(ValidationFailed) as latency:
        logger_for(FlakySink()).log(inputs={}, prediction=0, latency_ms=float("nan"))
    assert latency.value.field == "latency_ms"


def test_from_env_picks_the_local_store_or_names_the_missing_setting(tmp_path):
    logger = RequestLogger.from_env({"ENDPOINT_NAME": "flights", "DEPLOYMENT_NAME": "green",
                                     "MLOPS_DATA_DIR": str(tmp_path)})
    assert isinstance(logger.sink, SqliteTelemetryStore) and logger.sink.path == tmp_path / "telemetry.sqlite"
    assert (logger.endpoint, logger.deployment) == ("flights", "green")
    with pytest.raises(ConfigurationError, match="MLOPS_ENDPOINT"):
        RequestLogger.from_env({})
    with pytest.raises(ConfigurationError, match="MLOPS_TELEMETRY_DCR_ID"):
        RequestLogger.from_env({"MLOPS_ENDPOINT": "flights", "MLOPS_TELEMETRY_DCE": "https://dce.example"})


class FakeIngestion(HttpTransport):
    """The Logs Ingestion API at the network edge: records what each POST carried; fails when told to."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, list[dict]]] = []
        self.status = 204

    def send(self, request, **kwargs):
        rows = json.loads(gzip.decompress(request.content))
        self.posts.append((request.url, rows))
        raw = requests.Response()
        raw.status_code, raw.raw, raw.reason = self.status, io.BytesIO(b""), "x"
        response = RestRequestsTransportResponse(request=request, internal_response=raw, block_size=4096)
        response.read()
        return response

    def open(self): ...
    def close(self): ...
    def __enter__(self): return self
    def __exit__(self, *args): ...


class Token:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        return AccessToken("t", 2**31)


def test_the_azure_sink_posts_rows_of_the_custom_table_through_the_ingestion_sdk():
    transport = FakeIngestion()
    sink = LogsIngestionTelemetrySink("https://dce-1.westeurope.ingest.monitor.azure.com", "dcr-abc",
                                      credential=Token(), transport=transport, retry_total=0)
    logger = logger_for(sink, batch_size=100)
    logger.log(inputs={"distance": math.nan, "origin": "JFK"}, prediction=1, score=0.9, latency_ms=4.0,
               request_id="r1", time=T0)
    logger.label("r1", 0, time=T0 + timedelta(days=1))
    assert logger.flush() == 1
    (url, rows), (label_url, labels) = transport.posts
    assert "/dataCollectionRules/dcr-abc/streams/Custom-MLRequests_CL" in url
    assert rows == [{"TimeGenerated": "2024-03-01T00:00:00Z", "RequestId": "r1", "Endpoint": "flights",
                     "Deployment": "blue", "ModelVersion": "3", "Inputs": {"distance": "NaN", "origin": "JFK"},
                     "Prediction": 1, "Score": 0.9, "LatencyMs": 4.0, "StatusCode": 200}]
    assert "Custom-MLLabels_CL" in label_url and labels[0]["Label"] == 0
    transport.status = 503
    logger.log(inputs={}, prediction=0, latency_ms=1.0, request_id="r2")
    assert logger.flush() == 0  # kept for the next flush
    transport.status = 204
    assert logger.flush() == 1 and transport.posts[-1][1][0]["RequestId"] == "r2"


def test_numpy_values_from_a_model_are_stored_as_numbers(tmp_path):
    import numpy as np

    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    logger = logger_for(store)
    logger.log(inputs={"distance": np.float32(2.5), "hour": np.int64(7), "origin": np.str_("JFK")},
               prediction=np.array([0.1, 0.9]), score=np.float64(0.9), latency_ms=1.0, request_id="r", time=T0)
    logger.flush()
    row = store.read_window("flights", T0, T0 + timedelta(seconds=1)).to_pylist()[0]
    assert (row["f:distance"], row["i:hour"], row["s:origin"]) == (2.5, 7, "JFK")  # numbers kept as numbers
    assert json.loads(row["prediction_json"]) == [0.1, 0.9]  # not a number: its JSON text


def test_generation_fields_are_validated_and_stored_with_the_request(tmp_path):
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    logger = logger_for(store, batch_size=100)
    with pytest.raises(ValidationFailed, match="tokens_in"):
        logger.log(inputs={}, prediction=None, latency_ms=1.0, generation={"tokens_in": -1})
    with pytest.raises(ValidationFailed, match="unknown fields"):
        logger.log(inputs={}, prediction=None, latency_ms=1.0, generation={"completion": "hi"})
    with pytest.raises(ValidationFailed, match="response must be text"):
        logger.log(inputs={}, prediction=None, latency_ms=1.0, generation={"response": 42})
    logger.log(inputs={"channel": "web"}, prediction=None, latency_ms=900.0, request_id="c1", time=T0,
               generation={"prompt": "Where is my order?", "response": "It ships today.", "tokens_in": 7,
                           "tokens_out": 5, "model": "gpt-4o-mini", "finish_reason": "stop"})
    logger.close()
    row = store.read_window("flights", T0, T0 + timedelta(hours=1)).to_pylist()[0]
    assert json.loads(row["generation"]) == {"prompt": "Where is my order?", "response": "It ships today.",
                                             "tokens_in": 7, "tokens_out": 5, "model": "gpt-4o-mini",
                                             "finish_reason": "stop"}


def test_a_store_made_before_generation_fields_gains_the_column(tmp_path):
    import sqlite3
    from contextlib import closing

    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE requests (time_us INTEGER NOT NULL, request_id TEXT NOT NULL, endpoint TEXT NOT "
                   "NULL, deployment TEXT, model_version TEXT, inputs TEXT, prediction TEXT, score REAL, latency_ms "
                   "REAL, status_code INTEGER)")
        db.execute("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (1709251200000000, "old", "flights", "blue", "3", "{}", "1", 0.5, 3.0, 200))
    store = SqliteTelemetryStore(path)
    logger = logger_for(store)
    logger.log(inputs={}, prediction=None, latency_ms=1.0, request_id="new", time=T0 + timedelta(minutes=1),
               generation={"prompt": "hi"})
    logger.close()
    rows = store.read_window("flights", T0, T0 + timedelta(hours=1)).to_pylist()
    assert [(r["request_id"], r["generation"]) for r in rows] == [("old", None), ("new", '{"prompt":"hi"}')]
