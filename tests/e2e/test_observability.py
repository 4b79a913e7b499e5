"""The service's own telemetry, through the real app under devhost, exported to OpenTelemetry's in-memory exporters:
one trace from the timer tick to the check, the incident's alert and the retrain decision, linked by the CloudEvents
ids; metrics for checks, verdicts, incidents, deliveries, dead-letters and check duration."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.bus import BusMessage
from core.observability import Observability
from core.routing import TOPIC
from tests.e2e.world import flights

ROOT = Path(__file__).parents[2]
DAY0 = datetime(2013, 4, 1, tzinfo=timezone.utc)


@pytest.fixture()
def traced(tmp_path, monkeypatch):
    import bootstrap
    import function_app
    from core.clock import ManualClock
    from core.settings import Settings
    from core.telemetry import RequestRecord
    from devhost.host import DevHost

    rng = np.random.default_rng(2)
    monitors = tmp_path / "monitors"
    (monitors / "reference").mkdir(parents=True)
    spec = (ROOT / "monitors/examples/flights-delay.yaml").read_text().replace("consecutive: 2", "consecutive: 1")
    (monitors / "flights-delay.yaml").write_text(spec)
    ref = flights(rng, 3000)
    ref["label"], ref["score"] = rng.integers(0, 2, 3000), rng.random(3000)
    ref["time"] = pd.date_range("2013-01-01", periods=3000, freq="37min", tz="UTC")
    ref.to_parquet(monitors / "reference/flights-delay.parquet")
    for name, value in {"MLOPS_DATA_DIR": str(tmp_path / "data"), "MLOPS_MONITORS_DIR": str(monitors),
                        "CHECK_SCHEDULE": "0 5 * * * *", "TRACK_SCHEDULE": "0 0 0 1 1 *",
                        "MLOPS_RETRAIN_CONFIG": "", "MLOPS_WEBHOOK_URL": ""}.items():
        monkeypatch.setenv(name, value)
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    observability = Observability(provider, MeterProvider(metric_readers=[reader]))
    clock = ManualClock(DAY0 + timedelta(days=1, minutes=30))
    box = bootstrap.configure(Settings(), clock=clock, observability=observability)
    hot = flights(rng, 600, temp_shift=30.0)
    box.telemetry_store.write([
        RequestRecord(time=DAY0 + timedelta(seconds=120 * i), request_id=f"r{i}", endpoint="flights",
                      deployment="blue", model_version="flights-delay:1", inputs=row, prediction=0, score=0.4,
                      latency_ms=4.0, status_code=200) for i, row in enumerate(hot.to_dict("records"))])
    host = DevHost(function_app.app, bus=box.bus, clock=clock, http_port=None, keys_path=tmp_path / "keys.json")
    yield box, host, spans, reader
    host.stop()
    bootstrap.configure(Settings())
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def metric_points(reader) -> dict[tuple[str, tuple], float]:
    out = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    out[(metric.name, tuple(sorted(point.attributes.items())))] = \
                        value if value is not None else point.count
    return out


def test_one_trace_from_timer_to_check_alert_and_retrain(traced):
    box, host, spans, reader = traced
    host.advance_to(DAY0 + timedelta(days=1, hours=1, minutes=10))  # the hourly tick at 01:05 asks for DAY0
    host.drain()

    finished = spans.get_finished_spans()
    by_name = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    timer = by_name["timer schedule_checks"][-1]
    check = by_name["run-check mlops.check.requested.v1"][0]
    alert = by_name["alerts mlops.incident.changed.v1"][0]
    retrain = by_name["retrain mlops.drift.detected.v1"][0]
    trace_id = timer.context.trace_id
    assert {s.context.trace_id for s in (check, alert, retrain)} == {trace_id}

    def parent(span):
        return next(s for s in finished if s.context.span_id == span.parent.span_id)

    published = parent(check)
    assert published.name == "publish mlops.check.requested.v1" and parent(published) is timer
    assert parent(parent(alert)) is check and parent(retrain).name == "publish mlops.drift.detected.v1"
    assert parent(parent(retrain)) is check

    # the link is the CloudEvents id: the consumer span names the event the bus delivered
    from core.records import audited_events

    audit = {e.type: e for e in audited_events(box.store)}  # the audit consumer keeps every event
    requested = audit["mlops.check.requested.v1"]
    assert check.attributes["cloudevents.event_id"] == requested.id
    assert requested.extensions["traceparent"].startswith(f"00-{trace_id:032x}-{published.context.span_id:016x}-")
    assert alert.attributes["mlops.correlationid"] == requested.id

    points = metric_points(reader)
    assert points[("mlops.checks", (("monitor", "flights-delay"), ("status", "breached")))] == 1
    assert points[("mlops.verdicts", (("breached", True), ("monitor", "flights-delay"),
                                      ("signal", "data_drift")))] == 1
    assert points[("mlops.check.duration", (("monitor", "flights-delay"),))] == 1
    assert points[("mlops.incidents", (("monitor", "flights-delay"), ("signal", "data_drift"),
                                       ("status", "opened")))] == 1
    assert points[("mlops.deliveries", (("consumer", "run-check"), ("outcome", "completed")))] == 1
    assert points[("mlops.deliveries", (("consumer", "alerts"), ("outcome", "completed")))] >= 1


def test_a_poison_message_is_counted_as_a_dead_letter_and_its_span_failed(traced):
    box, host, spans, reader = traced
    body = b'{"specversion": "1.0", "id": "x1", "type": "mlops.check.requested.v1", "source": "/t", ' \
           b'"time": "2013-04-02T00:00:00Z", "data": {"monitor": "gone", "window_start": ' \
           b'"2013-04-01T00:00:00Z", "window_end": "2013-04-02T00:00:00Z"}}'  # a monitor that is not configured
    box.bus.send(TOPIC, BusMessage(message_id="x1", body=body, subject="mlops.check.requested.v1",
                                   application_properties={"type": "mlops.check.requested.v1"}))
    host.drain()
    [dead] = box.bus.dead_letters(f"{TOPIC}/subscriptions/run-check")
    points = metric_points(reader)
    assert points[("mlops.deadletters", (("consumer", "run-check"), ("reason", dead.reason)))] == 1
    assert points[("mlops.deliveries", (("consumer", "run-check"), ("outcome", "rejected")))] == 1
    [failed] = [s for s in spans.get_finished_spans() if s.name == "run-check mlops.check.requested.v1"]
    assert failed.status.status_code.name == "ERROR" and failed.attributes["cloudevents.event_id"] == "x1"
