from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.clock import ManualClock
from core.errors import NotFound, TelemetryUnavailable, ValidationFailed
from core.events import event_id, new_event
from core.records import CHECK, INCIDENT
from core.state_sqlite import SqliteStateStore
from core.types import EndpointRef, TelemetryBatch, Window
from monitors import windows
from monitors.check import CheckDeps, request_check, run_check
from monitors.drift.profile import ProfileCache
from monitors.spec import SpecRepository

DAY = timedelta(days=1)
T0 = datetime(2013, 4, 1, tzinfo=UTC)
SPEC = """\
name: flights-delay
endpoint: {name: flights, deployment: blue}
model: {name: delay-model}
features:
  - {name: distance, kind: numeric}
  - {name: carrier, kind: categorical}
prediction: {column: score, kind: score}
label: {column: delayed, task: classification, lag: 2d}
reference: {uri: ref.parquet}
window: {size: 1d, lateness: 1h}
signals:
  data_drift: {resamples: 40}
  performance: {min_labels: 50}
alert: {consecutive: 1}
retrain: {on_drift: true}
"""


def traffic(rng, n, shift=0.0, start=T0):
    score = rng.uniform(size=n)
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "time": pd.date_range(start, periods=n, freq="min", tz="UTC"),
        "model_version": "delay-model:3", "status_code": 200, "latency_ms": rng.uniform(5, 50, n),
        "distance": rng.normal(1000, 200, n) + shift, "carrier": rng.choice(["AA", "UA", "DL"], n),
        "score": score, "delayed": (rng.uniform(size=n) < score).astype(float),
    })


class FakeTelemetry:
    """Serves prepared frames per window start; records every fetch; can be made to fail."""

    def __init__(self):
        self.frames, self.fetched, self.down = {}, [], False

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        self.fetched.append((endpoint, window))
        if self.down:
            raise TelemetryUnavailable("Log Analytics is throttling")
        frame = self.frames.get(window.start, traffic(np.random.default_rng(9), 0))
        return TelemetryBatch(endpoint, window, frame, {"not_json": 2})


class RecordingPublisher:
    def __init__(self):
        self.published = []

    def publish(self, envelope, *, scheduled_at=None):
        self.published.append(envelope)

    def types(self):
        return [e.type for e in self.published]


class MemoryReports:
    def __init__(self):
        self.blobs = {}

    def put(self, name, content, content_type):
        self.blobs[name] = (content, content_type)
        return f"memory://{name}"

    def get(self, name):
        if name not in self.blobs:
            raise NotFound(name)
        return self.blobs[name][0]


@pytest.fixture
def deps(tmp_path):
    rng = np.random.default_rng(0)
    traffic(rng, 1500).to_parquet(tmp_path / "ref.parquet")
    (tmp_path / "flights.yaml").write_text(SPEC)
    store = SqliteStateStore(tmp_path / "state.sqlite")
    yield CheckDeps(store=store, publisher=RecordingPublisher(), telemetry=FakeTelemetry(),
                    specs=SpecRepository(tmp_path), profiles=ProfileCache(tmp_path / "profiles"),
                    reports=MemoryReports(), clock=ManualClock(T0 + 10 * DAY), base_dir=tmp_path)
    store.close()


def requested(day: int, monitor="flights-delay"):
    start = T0 + day * DAY
    data = {"monitor": monitor, "window_start": start.isoformat(), "window_end": (start + DAY).isoformat(),
            "reason": "timer"}
    return new_event("mlops.check.requested.v1", data, id=event_id("check.requested", monitor, day))


def test_a_drifted_window_is_recorded_alerted_and_published_with_evidence(deps):
    deps.telemetry.frames[T0 + 5 * DAY] = traffic(np.random.default_rng(1), 800, shift=300.0)
    record = run_check(requested(5), deps)
    window = Window(T0 + 5 * DAY, T0 + 6 * DAY)
    check_id = event_id("check", "flights-delay", window.key())
    assert record["check_id"] == check_id and record["status"] == "breached"
    stored = deps.store.get(CHECK, check_id).data
    assert stored["rows"] == 800 and stored["rejected"] == {"not_json": 2}
    assert "data_drift" in stored["breached_signals"]
    assert stored["summary"]["dataset_drift"] is True
    assert "distance" in [f["name"] for f in stored["summary"]["features"] if f["drifted"]]
    assert stored["model_version"] == "delay-model:3"
    assert stored["report"] == f"memory://checks/flights-delay/{window.key()}.json"
    assert b'"check_id"' in deps.reports.get(f"checks/flights-delay/{window.key()}.json")
    assert windows.passed(deps.store, "flights-delay", window)

    types = deps.publisher.types()
    assert types[0] == "mlops.check.completed.v1" and types.count("mlops.drift.detected.v1") == 1
    completed = deps.publisher.published[0].data
    assert completed["check_id"] == check_id and completed["dataset_drift"] is True
    assert completed["status"] == "breached" and completed["policy"] == "calibrated"
    drift = next(e for e in deps.publisher.published if e.type == "mlops.drift.detected.v1")
    incident = deps.store.get(INCIDENT, drift.data["incident_id"]).data
    assert incident["status"] == "open" and incident["signal"] == "data_drift"
    assert drift.data["retrain_allowed"] is True and drift.data["model_version"] == "delay-model:3"
    assert drift.data["window_start"] == "2013-04-06T00:00:00Z" and drift.data["endpoint"] == "flights"
    distance = next(f for f in drift.data["findings"] if f["name"] == "distance")
    assert distance["breached"] and distance["statistic"] > distance["threshold"] and distance["method"]
    assert drift.causationid == requested(5).id
    changed = [e for e in deps.publisher.published if e.type == "mlops.incident.changed.v1"]
    assert {(e.data["signal"], e.data["status"]) for e in changed} >= {("data_drift", "opened")}


def test_a_second_delivery_does_nothing(deps):
    deps.telemetry.frames[T0 + 5 * DAY] = traffic(np.random.default_rng(1), 800, shift=300.0)
    assert run_check(requested(5), deps) is not None
    published, fetched = len(deps.publisher.published), len(deps.telemetry.fetched)
    assert run_check(requested(5), deps) is None
    assert len(deps.publisher.published) == published and len(deps.telemetry.fetched) == fetched


def test_clean_windows_fit_once_and_performance_looks_back_by_the_label_lag(deps):
    for day in (3, 5, 6):
        deps.telemetry.frames[T0 + day * DAY] = traffic(np.random.default_rng(day), 600, start=T0 + day * DAY)
    first = run_check(requested(5), deps)
    second = run_check(requested(6), deps)
    assert deps.evaluators.fits == 1  # the reference was fitted once for both checks
    assert list((deps.store.path.parent / "profiles").glob("*.npz"))  # and its profiles are on disk
    assert first["status"] == "ok" and second["status"] == "ok"
    assert first["performance_window"] == {"start": "2013-04-04T00:00:00Z", "end": "2013-04-05T00:00:00Z"}
    assert (EndpointRef("flights", "blue"), Window(T0 + 3 * DAY, T0 + 4 * DAY)) in deps.telemetry.fetched
    perf = next(f for f in first["findings"] if f["signal"] == "performance")
    assert perf["name"] == "auc" and perf["statistic"] > 0.6 and not perf["breached"]
    assert deps.publisher.types() == ["mlops.check.completed.v1"] * 2


def test_telemetry_outage_propagates_and_the_retry_runs(deps):
    deps.telemetry.down = True
    with pytest.raises(TelemetryUnavailable):
        run_check(requested(5), deps)
    assert not deps.publisher.published
    deps.telemetry.down = False
    assert run_check(requested(5), deps)["status"] == "empty"


def test_unknown_monitor_is_permanent(deps):
    with pytest.raises(NotFound, match="nope"):
        run_check(requested(5, monitor="nope"), deps)
    with pytest.raises(NotFound):
        request_check("nope", deps)


def test_request_check_asks_for_the_latest_complete_window(deps):
    deps.clock.set(T0 + 10 * DAY + timedelta(minutes=30))  # the day before ends 30 min ago: lateness is 1 h
    answer = request_check("flights-delay", deps)
    (envelope,) = deps.publisher.published
    assert envelope.type == "mlops.check.requested.v1" and answer["event_id"] == envelope.id
    assert answer["state"] == "requested" and answer["window"]["start"] == "2013-04-09T00:00:00Z"
    assert (envelope.data["window_start"], envelope.data["window_end"]) == ("2013-04-09T00:00:00Z",
                                                                           "2013-04-10T00:00:00Z")
    assert envelope.data["reason"] == "http"
    unfinished = Window(T0 + 10 * DAY, T0 + 11 * DAY)
    with pytest.raises(ValidationFailed, match="not complete until 2013-04-12T01:00:00Z") as err:
        request_check("flights-delay", deps, window=unfinished)
    assert err.value.field == "window" and len(deps.publisher.published) == 1


@pytest.mark.slow  # imports evidently (~7 s on a busy 2-core machine)
def test_a_report_is_built_off_the_request_and_rebuilt_a_month_later_with_the_same_numbers(deps, tmp_path):
    import html
    import re
    from dataclasses import replace

    from monitors.check_report import REPORT_REQUESTED, build_report, request_report, stored_report

    deps = replace(deps, snapshots=tmp_path / "references")
    deps.telemetry.frames[T0 + 5 * DAY] = traffic(np.random.default_rng(1), 300, shift=300.0)
    record = run_check(requested(5), deps)
    check_id = record["check_id"]
    assert stored_report(check_id, deps) is None  # nothing is rendered inside a request
    receipt = request_report(check_id, deps)
    assert receipt["status"] == "building" and deps.publisher.published[-1].type == REPORT_REQUESTED
    build_report(check_id, deps)
    first = html.unescape(stored_report(check_id, deps).decode().split("<iframe")[0])
    distance = next(f for f in record["summary"]["features"] if f["name"] == "distance")["calibrated"]
    assert first.index("DRIFT by this service") < first.index("evidently's panels")
    assert f"{distance['effect']:.4g} (wasserstein)" in first and f"{distance['floor']:.3g}" in first
    assert "evidently's rule (not this service's verdict)" in first

    # a month later: the model was replaced, the reference file overwritten with other data
    traffic(np.random.default_rng(5), 1500, shift=-500.0).to_parquet(tmp_path / "ref.parquet")
    deps.clock.advance(timedelta(days=30))
    build_report(check_id, deps)
    again = html.unescape(stored_report(check_id, deps).decode().split("<iframe")[0])

    def numbers(page):  # every number in the verdict and in evidently's per-column table
        return re.findall(r"<td>(-?[0-9.e+-]+)</td>", page)

    assert numbers(again) == numbers(first) and len(numbers(first)) > 10
    assert record["reference"]["snapshot"] and record["spec"]["features"][0]["name"] == "distance"


def test_a_report_without_the_checks_reference_says_so_and_keeps_the_verdict(deps, tmp_path):
    from monitors.check_report import build_report, stored_report

    deps.telemetry.frames[T0 + 5 * DAY] = traffic(np.random.default_rng(1), 300, shift=300.0)
    check_id = run_check(requested(5), deps)["check_id"]  # no snapshot folder: only the uri and fingerprint
    traffic(np.random.default_rng(5), 1500, shift=-500.0).to_parquet(tmp_path / "ref.parquet")
    build_report(check_id, deps)
    html = stored_report(check_id, deps).decode()
    assert "changed since the check" in html and "DRIFT by this service" in html and "<iframe" not in html


def test_an_ad_hoc_window_off_the_grid_is_recorded_but_does_not_vote(deps):
    deps.telemetry.frames[T0 + 5 * DAY] = traffic(np.random.default_rng(1), 800, shift=300.0)
    odd = Window(T0 + 5 * DAY, T0 + 8 * DAY)  # three days: not a window of the 1d grid
    request_check("flights-delay", deps, window=odd)
    record = run_check(deps.publisher.published[0], deps)
    assert record["status"] == "breached" and record["incidents"] == [] and record["alerting"].startswith("skipped")
    assert deps.publisher.types()[1:] == ["mlops.check.completed.v1"]  # no incident, no drift event
    deps.telemetry.frames[T0 + 6 * DAY] = traffic(np.random.default_rng(2), 800, shift=300.0)
    assert run_check(requested(6), deps)["incidents"][0]["status"] == "opened"  # the grid window still counts


def test_through_the_local_bus_from_request_to_one_notification(deps, tmp_path):
    from dataclasses import replace

    from core.events import decode
    from core.localbus import SqliteBus, SqliteBusPublisher, provision
    from core.routing import TOPIC
    from monitors.notify import handle_event

    bus = SqliteBus(tmp_path / "bus.sqlite", clock=deps.clock)
    provision(bus)
    deps = replace(deps, publisher=SqliteBusPublisher(bus))
    deps.telemetry.frames[T0 + 5 * DAY] = traffic(np.random.default_rng(1), 800, shift=300.0)
    window = Window(T0 + 5 * DAY, T0 + 6 * DAY)
    request_check("flights-delay", deps, window=window)
    request_check("flights-delay", deps, window=window)  # a second POST: dropped by the bus as a duplicate
    (message,) = bus.receive(f"{TOPIC}/subscriptions/run-check", max_messages=5)
    assert run_check(decode(message.message.body), deps)["status"] == "breached"
    bus.complete(message.lock_token)

    notified = []

    class Recording:
        name, id = "recording", "recording"

        def notify(self, message):
            notified.append(dict(message))

    alerts = bus.receive(f"{TOPIC}/subscriptions/alerts", max_messages=10)
    assert {decode(m.message.body).data["signal"] for m in alerts} >= {"data_drift"}
    for m in alerts:
        handle_event(decode(m.message.body), [Recording()], deps.store)
        bus.abandon(m.lock_token)  # as if the host crashed before settling: the message comes back
    for m in bus.receive(f"{TOPIC}/subscriptions/alerts", max_messages=10):
        assert handle_event(decode(m.message.body), [Recording()], deps.store) == []
    assert len(notified) == len(alerts)  # one notification per incident change, despite the redelivery
    assert notified[0]["kind"] == "incident.opened" and "distance" in notified[0]["text"]
    (drift,) = bus.receive(f"{TOPIC}/subscriptions/retrain", max_messages=10)
    assert decode(drift.message.body).data["retrain_allowed"] is True
    bus.close()


def test_nan_statistics_are_stored_as_null_not_refused(deps):
    from core.records import put
    from core.types import Finding
    from monitors.report import check_document

    spec = deps.specs.get("flights-delay")
    odd = Finding("performance", "log_loss", float("nan"), 0.7, False, details={"spread": np.float32("inf")})
    doc = check_document(check_id="c", spec=spec, window=Window(T0, T0 + DAY), findings=[odd], rows=3,
                         rejected={}, status="ok")
    put(deps.store, CHECK, "c", doc)  # the store refuses NaN: a check must never be lost to one
    stored = deps.store.get(CHECK, "c").data["findings"][0]
    assert stored["statistic"] is None and stored["details"]["spread"] is None


def test_performance_over_a_horizon_pools_the_labelled_days_before_the_lagged_window(deps, tmp_path):
    (tmp_path / "flights.yaml").write_text(SPEC.replace("performance: {min_labels: 50}",
                                                        "performance: {min_labels: 50, horizon: 3d}"))
    for day in (1, 2, 3, 5):
        deps.telemetry.frames[T0 + day * DAY] = traffic(np.random.default_rng(day), 300, start=T0 + day * DAY)
    record = run_check(requested(5), deps)
    # window [day 5, day 6), labels 2 days late: [day 3, day 4); a 3-day horizon: [day 1, day 4)
    assert record["performance_window"] == Window(T0 + DAY, T0 + 4 * DAY).to_json()
    assert (EndpointRef("flights", "blue"), Window(T0 + DAY, T0 + 4 * DAY)) in deps.telemetry.fetched
