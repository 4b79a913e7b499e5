"""Retrain runs under failure: no event ahead of its state, held work comes back, deadlines reap with the canary
rolled back first, and one endpoint's failure (a raw SDK error included) never stops another's tracking."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from core.errors import PermanentError, RetryableError, WorkHeld
from core.types import ModelVersion, RunState, RunStatus, TrafficSplit
from retrain.handlers import get_run, on_deploy_event, on_retrain_event, request_retrain, track_runs
from retrain.runs import TRANSITIONS, P, load, transition
from tests.unit.test_retrain_handlers import EP, V2, deps, finish_run, models  # noqa: F401  (fixtures)


class StateAtPublish:
    """The bus at the edge: remembers the run's stored state at the moment each event is published."""

    def __init__(self, inner, store):
        self.inner, self.store, self.seen = inner, store, []

    def publish(self, envelope, *, scheduled_at=None):
        run_id = envelope.data.get("run_id")
        state = load(self.store, run_id).state.value if run_id and self.store.get("run", run_id) else None
        self.seen.append((envelope.type, state))
        self.inner.publish(envelope, scheduled_at=scheduled_at)

    def of(self, type_):
        return self.inner.of(type_)


def start(deps, key="k"):  # noqa: F811
    run = request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key=key, deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[-1], deps)
    return run["run_id"]


def test_every_event_is_published_after_the_state_it_announces_is_saved(deps):  # noqa: F811
    deps.publisher = StateAtPublish(deps.publisher, deps.store)
    run_id = start(deps)
    finish_run(deps, run_id, auc=0.74)
    on_deploy_event(deps.publisher.of("mlops.challenger.accepted.v1")[0], deps)
    expected = {"mlops.retrain.requested.v1": "requested", "mlops.retrain.started.v1": "running",
                "mlops.retrain.completed.v1": "trained", "mlops.challenger.accepted.v1": "accepted",
                "mlops.canary.started.v1": "canary"}
    assert dict(deps.publisher.seen) == expected  # was: completed published while the run was still 'running'


def test_an_event_ahead_of_its_state_comes_back_instead_of_being_dropped(deps):  # noqa: F811
    run_id = start(deps)
    from core.events import event_id, new_event

    early = new_event("mlops.retrain.completed.v1", {"run_id": run_id, "endpoint": EP.name, "status": "succeeded"},
                      id=event_id("retrain.completed", run_id), time=deps.clock.now())
    with pytest.raises(WorkHeld, match="not yet trained"):  # the consumer lets the message come back
        on_deploy_event(early, deps)
    assert get_run(run_id, deps)["state"] == "running"


def test_a_crash_between_saving_and_publishing_is_relayed_by_the_next_tick(deps):  # noqa: F811
    class Down:
        def publish(self, envelope, *, scheduled_at=None):
            raise RetryableError("bus unreachable")

    real = deps.publisher
    deps.publisher = Down()
    with pytest.raises(RetryableError):
        request_retrain(EP.name, "x", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    (record,) = [load(deps.store, d.data["run_id"]) for _, d in deps.store.list("run")]
    assert record.state is P.REQUESTED and len(record.outbox) == 1  # saved, with its event, not yet sent
    deps.publisher = real
    track_runs(deps)
    (requested,) = real.of("mlops.retrain.requested.v1")
    assert requested.data["run_id"] == record.run_id and not load(deps.store, record.run_id).outbox


def test_the_state_machine_refuses_what_it_does_not_allow(deps):  # noqa: F811
    run_id = start(deps)
    assert transition(deps.store, run_id, P.PROMOTED, deps.clock.now()) is None  # running -> promoted: no
    assert transition(deps.store, run_id, P.RUNNING, deps.clock.now()) is None  # a repeat changes nothing
    assert P.FAILED not in TRANSITIONS[P.CANARY]  # a canary is rolled back before it may fail
    assert all(not TRANSITIONS.get(p) for p in (P.PROMOTED, P.ROLLED_BACK, P.REJECTED, P.SKIPPED, P.FAILED))
    history = get_run(run_id, deps)["history"]
    assert [(h.get("from"), h["state"]) for h in history] == [(None, "requested"), ("requested", "running")]


def canary(deps, run_id):  # noqa: F811
    finish_run(deps, run_id, auc=0.74)
    on_deploy_event(deps.publisher.of("mlops.challenger.accepted.v1")[-1], deps)
    assert deps.deployer.current(EP) == TrafficSplit({"blue": 90, "green": 10})


def test_a_canary_that_cannot_be_judged_at_its_deadline_is_rolled_back_then_failed(deps):  # noqa: F811
    """At its deadline a canary is judged one last time; if that breaks (here: no health source at all, as a
    bug would), the reaper still takes its traffic back and fails the run."""
    run_id = start(deps)
    canary(deps, run_id)
    deps.health = None
    deps.clock.advance(4 * deps.config.bake + timedelta(minutes=1))
    track_runs(deps)
    record = get_run(run_id, deps)
    assert record["state"] == "failed" and "deadline" in record["outcome"]["error"]
    assert [h["state"] for h in record["history"]][-2:] == ["rolling_back", "failed"]
    assert record["history"][-2]["by"] == "reaper"
    assert deps.deployer.current(EP) == TrafficSplit({"blue": 100})  # traffic back on the champion first
    (event,) = deps.publisher.of("mlops.model.rolled_back.v1")
    assert event.data["traffic"] == {"blue": 100}


class Refusing:
    """A deployer that refuses the promotion for good (as Azure answers a 400), and counts rollbacks."""

    def __init__(self, inner):
        self.inner, self.rollbacks = inner, 0

    def promote(self, endpoint, candidate):
        raise PermanentError("the deployment cannot take all traffic: quota exceeded")

    def rollback(self, endpoint):
        self.rollbacks += 1
        return self.inner.rollback(endpoint)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_permanent_error_while_the_canary_is_watched_rolls_it_back_before_failing(deps):  # noqa: F811
    from core.telemetry import DeploymentHealth
    from tests.unit.test_retrain_handlers import FixedHealth

    run_id = start(deps)
    canary(deps, run_id)
    deps.health = FixedHealth(DeploymentHealth(500, 0, 0.0, 10.0))
    deps.deployer = Refusing(deps.deployer)
    deps.clock.advance(deps.config.bake)
    track_runs(deps)
    record = get_run(run_id, deps)
    assert record["state"] == "failed" and "quota exceeded" in record["outcome"]["error"]
    assert [h["state"] for h in record["history"]][-3:] == ["promoting", "rolling_back", "failed"]
    assert deps.deployer.rollbacks == 1 and deps.deployer.current(EP) == TrafficSplit({"blue": 100})


class RawSdkError:
    """One endpoint's deployer raising what azure-ai-ml raises when untranslated (a raw azure.core error)."""

    def __init__(self, inner, broken):
        self.inner, self.broken = inner, broken

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(endpoint, *args, **kwargs):
            if endpoint.name == self.broken:
                from azure.core.exceptions import ServiceRequestError

                raise ServiceRequestError("Connection aborted: the Azure ML management endpoint reset it")
            return method(endpoint, *args, **kwargs)

        return call


def test_one_endpoints_failure_never_stops_another_endpoints_tracking(deps, models):  # noqa: F811
    from core.telemetry import DeploymentHealth
    from core.types import EndpointRef
    from tests.unit.test_retrain_handlers import FixedHealth

    registry, v1, _ = models
    other = "other-ep"
    deps.targets = {**deps.targets, other: replace(deps.targets[EP.name], endpoint=other)}
    deps.deployer.start_canary(EndpointRef(other), v1, 10)
    first = start(deps, "a")
    canary(deps, first)
    request_retrain(other, "y", trigger={"kind": "http"}, idempotency_key="b", deps=deps)
    on_retrain_event(deps.publisher.of("mlops.retrain.requested.v1")[-1], deps)
    (second,) = [r for r in deps.runner.submitted if r != first]
    deps.runner.statuses[second] = RunStatus(RunState.SUCCEEDED, metrics={}, model=ModelVersion("flights", "9"))
    deps.health = FixedHealth(DeploymentHealth(500, 0, 0.0, 10.0))
    healthy = deps.deployer
    deps.deployer = RawSdkError(healthy, broken=EP.name)
    deps.clock.advance(deps.config.bake)
    with pytest.raises(RuntimeError, match="tracking failed for 1 run"):  # the tick is reported failed ...
        track_runs(deps)
    assert get_run(second, deps)["state"] == "trained"  # ... after the other endpoint's run was tracked
    assert get_run(first, deps)["state"] == "promoting"  # its decision is saved; the next tick acts on it
    deps.deployer = healthy
    track_runs(deps)
    assert get_run(first, deps)["state"] == "promoted" and deps.deployer.current(EP) == TrafficSplit({"green": 100})


def test_azure_sdk_errors_leave_the_adapters_as_retryable_or_permanent():
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    from core.errors import NotFound
    from core.types import EndpointRef
    from retrain.deploy import AzureMLDeployer
    from tests.contract.test_deployer import FakeMLClient

    class Response:
        reason, headers, content_type = "status", {}, "application/json"

        def __init__(self, status):
            self.status_code = status

        def text(self, encoding=None):
            return '{"error": {"code": "X", "message": "from the service"}}'

    client = FakeMLClient()
    deployer = AzureMLDeployer(client)
    for raised, expected in [(HttpResponseError(response=Response(503)), RetryableError),
                             (HttpResponseError(response=Response(429)), RetryableError),
                             (ServiceRequestError("connection reset"), RetryableError),
                             (HttpResponseError(response=Response(403)), PermanentError),
                             (HttpResponseError(response=Response(400)), PermanentError)]:
        def get(name, raised=raised):
            raise raised

        client.online_endpoints.get = get
        with pytest.raises(expected) as caught:
            deployer.current(EndpointRef("flights-ep"))
        assert "current flights-ep" in str(caught.value) and caught.value.__cause__ is raised
    client.online_endpoints.get = lambda name: (_ for _ in ()).throw(
        __import__("azure.core.exceptions", fromlist=["x"]).ResourceNotFoundError("gone"))
    with pytest.raises(NotFound):
        deployer.current(EndpointRef("flights-ep"))
