"""Retrain handlers end to end on the local adapters: state store, registry, deployer, a real loopback
endpoint writing real telemetry. The pipeline runner and the labelled-data source are hand-written fakes
(the runners have their own contract suite)."""
from __future__ import annotations

import http.client
import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from core.clock import ManualClock
from core.errors import NotFound, RetryableError, ValidationFailed
from core.events import event_id, new_event
from core.records import RUN
from core.state_sqlite import SqliteStateStore
from core.telemetry import DeploymentHealth
from core.telemetry_store import SqliteTelemetryStore
from core.types import EndpointRef, ModelVersion, RunRef, RunState, RunStatus, TelemetryBatch, TrafficSplit
from retrain.deploy import LocalDeployer
from retrain.deps import RetrainConfig, RetrainDeps, RetrainTarget
from retrain.endpoint import LocalEndpoint
from retrain.gate import GatePolicy
from retrain.handlers import get_run, on_deploy_event, on_retrain_event, request_retrain, track_runs
from retrain.policy import RetrainPolicy
from retrain.registry import LocalModelRegistry
from tests.unit._retrain_data import FEATURES, LABEL, TRAINING, months, register_model

EP = EndpointRef("flights-ep")
START = datetime(2013, 6, 1, tzinfo=timezone.utc)


class ListPublisher:
    """Keeps published events; like the bus, drops a repeated message id."""

    def __init__(self):
        self.events = []

    def publish(self, envelope, *, scheduled_at=None):
        if all(e.id != envelope.id for e in self.events):
            self.events.append(envelope)

    def of(self, type_):
        return [e for e in self.events if e.type == type_]


class FakeRunner:
    backend = "fake"

    def __init__(self):
        self.submitted, self.statuses = {}, {}

    def submit(self, request, *, idempotency_key):
        if idempotency_key not in self.submitted:
            self.submitted[idempotency_key] = dict(request)
        return RunRef(request["run_id"], self.backend, f"job-{idempotency_key}")

    def status(self, run):
        return self.statuses.get(run.run_id, RunStatus(RunState.RUNNING))


class FakeLabelled:
    """Served traffic with labels; a quarter of the labels have not arrived yet."""

    def __init__(self, rows=2000):
        frame = months(5, 5, rows, seed=2).rename(columns={LABEL: "label"})
        frame.loc[frame.index % 4 == 0, "label"] = float("nan")
        self.frame, self.fetched = frame, []

    def fetch(self, endpoint, window):
        self.fetched.append(window)
        return TelemetryBatch(endpoint, window, self.frame)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    registry = LocalModelRegistry(tmp_path_factory.mktemp("registry"))
    return registry, register_model(registry, 1, 3, seed=0, run_id="v1"), register_model(registry, 4, 5, seed=1,
                                                                                         run_id="v2")


@pytest.fixture
def deps(tmp_path, models):
    registry, v1, _ = models
    deployer = LocalDeployer(tmp_path / "endpoints.json", registry)
    deployer.start_canary(EP, v1, 10)  # the champion serves everything
    target = RetrainTarget(endpoint=EP.name, model_name="flights", features=FEATURES, label=LABEL,
                           reference=str(tmp_path / "reference.parquet"), slices=("origin",),
                           train=TRAINING["train"], code=TRAINING["code"])
    config = RetrainConfig(retrain=RetrainPolicy(cooldown=timedelta(days=3), max_per_day=1,
                                                 min_new_labelled_rows=500),
                           gate=GatePolicy(min_holdout_rows=200, min_slice_rows=100), canary_percent=10,
                           bake=timedelta(hours=6), max_error_rate=0.05, min_canary_requests=30,
                           max_p95_latency_ms=10_000,  # latency on a busy test machine is not what is tested
                           export_dir=tmp_path / "exports")
    return RetrainDeps(store=SqliteStateStore(tmp_path / "state.sqlite"), publisher=ListPublisher(),
                       runner=FakeRunner(), registry=registry, deployer=deployer,
                       health=SqliteTelemetryStore(tmp_path / "telemetry.sqlite"), labelled=FakeLabelled(),
                       clock=ManualClock(START), targets={EP.name: target}, config=config)


AT_RISK = {"realized": {"metric": "auc", "value": 0.62, "baseline": 0.70, "margin": 0.04, "higher_is_better": True}}


def drift_event(deps, allowed=True, window="2013-05-31", performance=AT_RISK):
    return new_event("mlops.drift.detected.v1", {
        "monitor": "flights-delay", "check_id": f"c-{window}", "incident_id": "inc-1", "endpoint": EP.name,
        "window_start": f"{window}T00:00:00Z", "window_end": f"{window}T23:59:59Z", "findings": [],
        "drifted_features": ["temp"], "retrain_allowed": allowed, "performance": performance},
        id=event_id("drift", window, allowed, str(performance)), time=deps.clock.now())


V2 = ModelVersion("flights", "2")


def finish_run(deps, run_id, auc, champion_auc=0.70, model=V2):
    metrics = {"challenger/auc": auc, "challenger/rows": 1000.0, "champion/auc": champion_auc,
               "champion/rows": 1000.0, "challenger/slice/origin/JFK/auc": auc, "challenger/slice/origin/JFK/rows":
               400.0, "champion/slice/origin/JFK/auc": champion_auc, "champion/slice/origin/JFK/rows": 400.0}
    deps.runner.statuses[run_id] = RunStatus(RunState.SUCCEEDED, metrics=metrics, model=model,
                                             steps={"prep": "succeeded"})
    assert track_runs(deps)["completed"] == 1
    (completed,) = [e for e in deps.publisher.of("mlops.retrain.completed.v1") if e.data["run_id"] == run_id]
    return on_deploy_event(completed, deps)


def test_repeated_http_requests_with_one_idempotency_key_make_one_run(deps):
    trigger = {"kind": "http", "caller": "alice"}
    first = request_retrain(EP.name, "weekly refresh", trigger=trigger, idempotency_key="key-1", deps=deps)
    again = request_retrain(EP.name, "weekly refresh", trigger=trigger, idempotency_key="key-1", deps=deps)
    assert first["existing"] is False and again["existing"] is True
    assert again["run_id"] == first["run_id"]
    (requested,) = deps.publisher.of("mlops.retrain.requested.v1")
    on_retrain_event(requested, deps)
    on_retrain_event(requested, deps)  # redelivered
    assert len(deps.runner.submitted) == 1 and len(deps.publisher.of("mlops.retrain.started.v1")) == 1
    record = get_run(first["run_id"], deps)
    assert record["state"] == "running" and record["trigger"] == trigger
    assert record["data"]["rows"] == 1500 and record["champion"] == "flights:1"
    request = deps.runner.submitted[first["run_id"]]
    assert request["parent"] == "flights:1" and request["champion"].endswith("flights/1/model")
    exported = __import__("pandas").read_parquet(request["recent"])
    assert list(exported.columns) == [*FEATURES, LABEL, "time"] and exported[LABEL].notna().all()
    other = request_retrain(EP.name, "again", trigger=trigger, idempotency_key="key-2", deps=deps)
    assert other["run_id"] == first["run_id"] and other["existing"]  # one active run per endpoint


def test_duplicate_drift_events_start_one_run_and_disallowed_drift_none(deps):
    assert on_retrain_event(drift_event(deps, allowed=False), deps) is None
    assert deps.store.list(RUN) == []
    event = drift_event(deps)
    on_retrain_event(event, deps)
    on_retrain_event(event, deps)
    deps.clock.advance(timedelta(days=1))
    later = on_retrain_event(drift_event(deps, window="2013-06-01"), deps)  # same incident, next window
    assert later["started"] is False and "still active" in later["reasons"][0]
    (record,) = [d.data for _, d in deps.store.list(RUN)]
    assert record["trigger"]["kind"] == "drift" and record["trigger"]["event_id"] == event.id
    assert len(deps.runner.submitted) == 1


def test_drift_alone_warns_and_retrains_only_when_performance_is_at_risk(deps):
    within_noise = {"realized": {"metric": "auc", "value": 0.67, "baseline": 0.70, "margin": 0.04},
                    "estimated": {"metric": "auc", "value": 0.69, "baseline": 0.70, "margin": 0.01}}
    for performance in (None, within_noise):
        refused = on_retrain_event(drift_event(deps, performance=performance), deps)
        assert refused["started"] is False and refused["reasons"][0].startswith("drift alone does not retrain")
    assert deps.store.list(RUN) == [] and deps.runner.submitted == {}
    estimated_drop = {"estimated": {"metric": "auc", "value": 0.62, "baseline": 0.70, "margin": 0.02}}
    on_retrain_event(drift_event(deps, performance=estimated_drop), deps)  # no labels yet: the estimate decides
    (record,) = [d.data for _, d in deps.store.list(RUN)]
    assert "performance at risk: estimated auc 0.620 vs reference 0.700" in record["reason"]
    assert len(deps.runner.submitted) == 1


def test_performance_at_risk_counts_its_own_noise_allowance_not_the_pages():
    """The monitor pages at alpha 0.001 (its margin 3.09 standard errors); the retrain policy allows noise_z
    (2) of the same standard errors: the gate still judges the challenger, so a retrain may start sooner."""
    from retrain.policy import performance_at_risk

    window = {"realized": {"metric": "auc", "value": 0.64, "baseline": 0.70, "standard_error": 0.015,
                           "margin": 0.046}}
    assert performance_at_risk(window, RetrainPolicy()).allowed  # 0.06 > 2 x 0.015 + 0.02
    refused = performance_at_risk(window, RetrainPolicy(noise_z=3.09))  # 0.06 < 0.046 + 0.02
    assert not refused.allowed and "noise 0.046 + margin 0.02" in refused.reasons[0]


def test_drift_retrains_a_stale_champion_only_past_max_model_age(deps, models, tmp_path):
    """Performance holds, yet the champion's training data ended 62 days ago: drift alone warns by default;
    with max_model_age 60d it starts a retrain (the gate decides), with 90d it does not."""
    from dataclasses import replace

    registry, v1, _ = models
    own = LocalModelRegistry(tmp_path / "registry")
    stale = own.register("flights", registry.model_path(v1), metrics={}, lineage={
        "run_id": "old", "task": "binary", "features": FEATURES, "target": LABEL,
        "training_window": {"start": "2013-01-01T00:00:00Z", "end": "2013-03-31T00:00:00Z"}})
    deps.registry, deps.deployer = own, LocalDeployer(tmp_path / "stale-endpoints.json", own)
    deps.deployer.start_canary(EP, stale, 10)  # an empty endpoint: it takes all the traffic

    def aged(days):
        policy = replace(deps.config.retrain, max_model_age=timedelta(days=days) if days else None)
        deps.config = replace(deps.config, retrain=policy)

    holds = {"realized": {"metric": "auc", "value": 0.70, "baseline": 0.70, "margin": 0.02}}
    refused = on_retrain_event(drift_event(deps, performance=holds), deps)
    assert refused["started"] is False and refused["reasons"][0].startswith("drift alone does not retrain")
    aged(90)
    young = on_retrain_event(drift_event(deps, performance=holds, window="2013-06-02"), deps)
    assert young["started"] is False and "within max_model_age 90 days" in young["reasons"][-1]
    assert deps.runner.submitted == {}
    aged(60)
    on_retrain_event(drift_event(deps, performance=holds, window="2013-06-03"), deps)
    (record,) = [d.data for _, d in deps.store.list(RUN)]
    assert "stale champion: its training data ended 62 days ago (max_model_age 60 days)" in record["reason"]
    assert len(deps.runner.submitted) == 1


def test_after_rejected_challengers_drift_waits_longer_and_a_persons_request_does_not(deps):
    """Cooldown 3 days. A drift retrain is rejected: four days on, drift is held (6 days needed), a person's
    request is not; it is rejected too: drift now waits 12 days from it, and starts on the 13th."""
    def drift(day):
        return on_retrain_event(drift_event(deps, window=f"2013-06-{day:02d}"), deps)

    def new_labels():  # the fake serves the same rows: a month later, they are new to the next retrain
        deps.labelled.frame = deps.labelled.frame.assign(time=deps.labelled.frame["time"] + timedelta(days=31))

    drift(1)
    (first,) = deps.runner.submitted
    assert finish_run(deps, first, auc=0.69)["accepted"] is False
    deps.clock.advance(timedelta(days=4))
    held = drift(5)
    assert held["started"] is False
    assert "less than 6 days" in held["reasons"][0] and "1 challenger(s) rejected" in held["reasons"][0]
    new_labels()
    asked = request_retrain(EP.name, "the team asks", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    assert get_run(asked["run_id"], deps)["state"] == "running"
    assert finish_run(deps, asked["run_id"], auc=0.68)["accepted"] is False
    deps.clock.advance(timedelta(days=11))
    held = drift(16)
    assert held["started"] is False and "less than 12 days" in held["reasons"][0]
    deps.clock.advance(timedelta(days=2))
    new_labels()
    drift(18)
    assert len(deps.runner.submitted) == 3
    assert get_run(list(deps.runner.submitted)[-1], deps)["policy"]["rejection_backoff"] == 2


def test_too_few_new_labelled_rows_skips_the_request_with_its_reason(deps):
    deps.labelled.frame = deps.labelled.frame.iloc[:100]
    run = request_retrain(EP.name, "try", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    record = get_run(run["run_id"], deps)
    assert record["state"] == "skipped" and "new labelled rows" in record["outcome"]["reasons"][0]
    assert deps.runner.submitted == {}


def test_class_name_labels_are_exported_counted_and_trained_on(deps):
    """A multiclass endpoint labelled with class names (the text demo's 'android', 'iphone', 'web')."""
    from dataclasses import replace

    frame = deps.labelled.frame
    frame["label"] = frame["label"].map({0: "on time", 1: "late"})
    deps.targets[EP.name] = replace(deps.targets[EP.name], task="multiclass")
    run = request_retrain(EP.name, "try", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    assert get_run(run["run_id"], deps)["state"] != "skipped"
    (request,) = deps.runner.submitted.values()
    recent = pd.read_parquet(request["recent"])
    assert len(recent) == frame["label"].notna().sum() and set(recent[LABEL]) == {"on time", "late"}


def test_unknown_endpoint_and_unknown_run_are_clear_errors(deps):
    with pytest.raises(ValidationFailed) as exc:
        request_retrain("nope", "x", trigger={}, idempotency_key="k", deps=deps)
    assert exc.value.field == "endpoint"
    with pytest.raises(NotFound):
        get_run("rt-missing", deps)


def test_a_worse_challenger_is_rejected_and_the_champion_stays(deps):
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    gate = finish_run(deps, run["run_id"], auc=0.69)
    assert gate["accepted"] is False
    (rejected,) = deps.publisher.of("mlops.challenger.rejected.v1")
    assert rejected.data["gate"]["numbers"]["improvement"] == pytest.approx(-0.01)
    assert get_run(run["run_id"], deps)["state"] == "rejected"
    assert deps.deployer.current(EP) == TrafficSplit({"blue": 100})


def test_a_failed_pipeline_run_is_recorded_with_its_step(deps):
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    deps.runner.statuses[run["run_id"]] = RunStatus(RunState.FAILED, failed_step="train", error="boom")
    track_runs(deps)
    (completed,) = deps.publisher.of("mlops.retrain.completed.v1")
    assert completed.data["status"] == "failed" and on_deploy_event(completed, deps) is None
    record = get_run(run["run_id"], deps)
    assert record["state"] == "failed" and record["outcome"] == {"result": "failed", "step": "train",
                                                                 "error": "boom"}


def score(endpoint, n, seed):
    rows = months(6, 6, n, seed=seed)
    columns = list(FEATURES)
    body = {"input_data": {"columns": columns, "data": rows[columns].astype(object).values.tolist()},
            "request_ids": [f"s{seed}-{i}" for i in range(n)]}
    host, port = endpoint.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/score", body=json.dumps(body))
    return json.loads(conn.getresponse().read())


def accept_and_start_canary(deps, run_id):
    finish_run(deps, run_id, auc=0.74)
    (accepted,) = deps.publisher.of("mlops.challenger.accepted.v1")
    on_deploy_event(accepted, deps)
    on_deploy_event(accepted, deps)  # redelivered: one canary
    (started,) = deps.publisher.of("mlops.canary.started.v1")
    assert started.data["candidate"] == {"name": "flights", "version": "2"}
    assert started.data["bake_until"] == "2013-06-01T06:00:00Z"
    return started


@pytest.mark.parametrize("faulty", [True, False], ids=["erroring-canary-rolled-back", "healthy-canary-promoted"])
def test_canary_over_real_traffic_is_rolled_back_or_promoted(deps, models, tmp_path, faulty):
    registry, v1, v2 = models
    run = request_retrain(EP.name, "drifted", trigger={"kind": "http", "caller": "bob"}, idempotency_key="k",
                          deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    started = accept_and_start_canary(deps, run["run_id"])
    assert started.data["traffic"] == {"blue": 90, "green": 10}
    if faulty:
        deps.deployer.inject_fault(v2, error_rate=0.5)
    with LocalEndpoint(EP.name, tmp_path / "endpoints.json", registry, deps.health, deps.clock) as endpoint:
        out = score(endpoint, 600, seed=7)
    assert 30 <= out["deployments"].count("green") <= 100
    deps.clock.advance(timedelta(minutes=30))
    result = track_runs(deps)
    record = get_run(run["run_id"], deps)
    if faulty:  # the breach is acted on before the bake period ends
        assert result["rolled_back"] == 1 and record["state"] == "rolled_back"
        assert deps.deployer.current(EP) == TrafficSplit({"blue": 100})
        assert deps.deployer.models(EP) == {"blue": v1}
        (event,) = deps.publisher.of("mlops.model.rolled_back.v1")
        assert "error rate" in event.data["reason"] and event.data["traffic"] == {"blue": 100}
    else:
        assert result == {"completed": 0, "promoted": 0, "rolled_back": 0}  # still baking
        deps.clock.advance(timedelta(hours=6))
        assert track_runs(deps)["promoted"] == 1
        assert deps.deployer.current(EP) == TrafficSplit({"green": 100})
        record = get_run(run["run_id"], deps)
        (event,) = deps.publisher.of("mlops.model.promoted.v1")
        assert record["state"] == "promoted" and event.data["model_version"] == "flights:2"
        assert event.data["reference_uri"] is None  # registered without one: monitors keep theirs
    # the audit trail: who asked, on what data, which run, the gate's numbers, each deployment step
    assert record["trigger"] == {"kind": "http", "caller": "bob"}
    assert record["window"]["end"] == "2013-06-01T00:00:00Z" and record["run"]["external_id"]
    assert record["gate"]["accepted"] and record["gate"]["numbers"]["champion"] == 0.70
    assert [s["step"] for s in record["deployment"]] == ["canary", "rollback" if faulty else "promote"]
    assert record["deployment"][-1]["health"]["requests"] >= 30
    assert [h["state"] for h in record["history"]] == [
        "requested", "running", "trained", "accepted", "canary",
        *(["rolling_back", "rolled_back"] if faulty else ["promoting", "promoted"])]
    assert all(h["from"] == prev["state"] for prev, h in zip(record["history"], record["history"][1:], strict=False))
    assert track_runs(deps) == {"completed": 0, "promoted": 0, "rolled_back": 0}  # nothing happens twice


class FixedHealth:
    def __init__(self, health):
        self.health, self.asked = health, []

    def deployment_health(self, endpoint, deployment, since, until):
        self.asked.append((endpoint, deployment, since, until))
        return self.health


@pytest.mark.parametrize(("health", "hours", "outcome", "reason"), [
    (DeploymentHealth(200, 0, 0.0, 12_000.0), 1, "rolled_back", "p95 latency"),
    (DeploymentHealth(5, 0, 0.0, 10.0), 19, None, None),  # too little traffic to judge: it keeps baking
    (DeploymentHealth(5, 0, 0.0, 10.0), 25, "rolled_back", "fewer than the 30 needed"),  # its deadline came
    (DeploymentHealth(5, 0, 0.0, 10.0), 7, None, None),  # baked, but too little traffic yet: wait
])
def test_canary_latency_and_starvation(deps, health, hours, outcome, reason):
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    accept_and_start_canary(deps, run["run_id"])
    deps.health = FixedHealth(health)
    deps.clock.advance(timedelta(hours=hours))
    track_runs(deps)
    record = get_run(run["run_id"], deps)
    assert deps.health.asked[0][:2] == (EP.name, "green")
    if outcome is None:
        assert record["state"] == "canary"
    else:
        assert record["state"] == outcome and reason in record["outcome"]["reasons"][0]
        assert deps.deployer.current(EP) == TrafficSplit({"blue": 100})


class TrickleHealth:
    """A low-traffic endpoint: the canary gets `per_hour` requests an hour, none failing."""

    def __init__(self, per_hour):
        self.per_hour = per_hour

    def deployment_health(self, endpoint, deployment, since, until):
        requests = int((until - since) / timedelta(hours=1) * self.per_hour)
        return DeploymentHealth(requests, 0, 0.0, 10.0 if requests else None)


def test_a_canary_on_a_low_traffic_endpoint_bakes_until_it_can_be_judged(deps):
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    accept_and_start_canary(deps, run["run_id"])
    deps.health = TrickleHealth(per_hour=2)  # 30 requests needed: 15 hours, past the 6 h bake and 18 h
    for _ in range(14):
        deps.clock.advance(timedelta(hours=1))
        assert track_runs(deps)["promoted"] == 0
    assert get_run(run["run_id"], deps)["state"] == "canary"
    deps.clock.advance(timedelta(hours=1))
    assert track_runs(deps)["promoted"] == 1
    record = get_run(run["run_id"], deps)
    assert record["state"] == "promoted" and record["outcome"]["reasons"] == ["healthy for 15:00:00"]
    assert deps.deployer.current(EP) == TrafficSplit({"green": 100})


def test_a_canary_that_never_gets_enough_traffic_is_rolled_back_at_its_deadline_saying_why(deps):
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    accept_and_start_canary(deps, run["run_id"])
    deps.health = TrickleHealth(per_hour=1)  # 24 requests by the deadline (four 6 h bakes), 30 needed
    deps.clock.advance(timedelta(hours=23, minutes=59))
    track_runs(deps)
    assert get_run(run["run_id"], deps)["state"] == "canary"
    deps.clock.advance(timedelta(hours=2))  # a tick late: judged all the same, not reaped as stuck
    assert track_runs(deps)["rolled_back"] == 1
    record = get_run(run["run_id"], deps)
    assert record["state"] == "rolled_back"
    assert record["outcome"]["reasons"] == ["only 25 canary requests in 1 day, 1:59:00, fewer than the 30 needed "
                                            "to judge its health"]
    (event,) = deps.publisher.of("mlops.model.rolled_back.v1")
    assert event.data["health"]["requests"] == 25 and "fewer than the 30 needed" in event.data["reason"]
    assert deps.deployer.current(EP) == TrafficSplit({"blue": 100})


class DownHealth:
    def deployment_health(self, endpoint, deployment, since, until):
        raise RetryableError("telemetry store unreachable")


def test_a_canary_whose_health_cannot_be_read_waits_then_is_rolled_back_at_its_deadline(deps):
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    accept_and_start_canary(deps, run["run_id"])
    deps.health = DownHealth()
    deps.clock.advance(timedelta(hours=12))
    assert track_runs(deps)["rolled_back"] == 0  # an outage delays the decision
    assert get_run(run["run_id"], deps)["state"] == "canary"
    deps.clock.advance(timedelta(hours=12))
    assert track_runs(deps)["rolled_back"] == 1
    record = get_run(run["run_id"], deps)
    assert record["outcome"]["reasons"] == ["no health numbers by its deadline: telemetry store unreachable"]
    assert deps.deployer.current(EP) == TrafficSplit({"blue": 100})


class RefusingRunner(FakeRunner):
    def submit(self, request, *, idempotency_key):
        raise ValidationFailed("retrain request is missing reference", field="reference")


def test_a_refused_submission_or_a_lost_request_fails_the_run_and_frees_the_endpoint(deps):
    deps.runner = RefusingRunner()
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k1", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    record = get_run(run["run_id"], deps)
    assert record["state"] == "failed" and record["outcome"]["step"] == "submit"
    assert "missing reference" in record["outcome"]["error"]
    lost = request_retrain(EP.name, "y", trigger={"kind": "http"}, idempotency_key="k2", deps=deps)
    assert lost["existing"] is False  # the failed run no longer holds the endpoint
    deps.clock.advance(timedelta(days=2))  # its requested event never arrives
    track_runs(deps)
    assert get_run(lost["run_id"], deps)["outcome"]["step"] == "requested"  # reaped past its deadline
    assert request_retrain(EP.name, "z", trigger={"kind": "http"}, idempotency_key="k3", deps=deps)["existing"] is False


@pytest.mark.slow
def test_the_loop_with_the_real_local_pipeline_from_request_to_canary(deps, tmp_path):
    from retrain.local_runner import LocalPipelineRunner

    months(1, 3, 5000).to_parquet(deps.targets[EP.name].reference)
    registry = LocalModelRegistry(tmp_path / "real-registry")
    champion = register_model(registry, 1, 3, rows=5000)
    deps.registry, deps.runner = registry, LocalPipelineRunner(tmp_path / "runs", registry_root=registry.root)
    deps.deployer = LocalDeployer(tmp_path / "real-endpoints.json", registry)
    deps.deployer.start_canary(EP, champion, 10)
    run = request_retrain(EP.name, "drifted", trigger={"kind": "http"}, idempotency_key="real", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[0], deps)
    deps.runner.wait(RunRef(**get_run(run["run_id"], deps)["run"]), timeout=240)
    assert track_runs(deps)["completed"] == 1
    record = get_run(run["run_id"], deps)
    assert record["state"] == "trained", record.get("error")
    assert record["candidate"] == "flights:2"
    assert record["metrics"]["champion/rows"] == record["metrics"]["holdout_rows"]
    lineage = registry.get("flights", "2")["lineage"]
    assert lineage["parent"] == str(champion) and lineage["run_id"] == run["run_id"]
    gate = on_deploy_event(deps.publisher.of("mlops.retrain.completed.v1")[0], deps)
    assert gate["numbers"]["champion"] == pytest.approx(record["metrics"]["champion/auc"])
    # Seeded data and models: trained with May traffic, the challenger beats the Jan-Mar champion on late May.
    assert gate["accepted"], gate["reasons"]
    assert gate["numbers"]["challenger"] > gate["numbers"]["champion"] + 0.005
    on_deploy_event(deps.publisher.of("mlops.challenger.accepted.v1")[0], deps)
    assert deps.deployer.current(EP) == TrafficSplit({"blue": 90, "green": 10})
    deps.health = FixedHealth(DeploymentHealth(200, 0, 0.0, 10.0))
    deps.clock.advance(deps.config.bake)
    assert track_runs(deps)["promoted"] == 1
    (event,) = deps.publisher.of("mlops.model.promoted.v1")
    assert event.data["model_version"] == "flights:2" and event.data["reference_uri"] == lineage["reference"]
    reference = pd.read_parquet(event.data["reference_uri"])  # what the monitors will compare traffic with
    assert {*FEATURES, LABEL, "time", "score"} <= set(reference.columns)
