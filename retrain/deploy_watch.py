"""After training: the gate, the canary, its bake period, and the reaper, as transitions of the run record.

A decision is saved before it is acted on: canary -> promoting | rolling_back records why, then the deployer
acts (each of its operations is idempotent), then promoted | rolled_back | failed is saved with its event.
A crash between any two steps leaves a state the next delivery or timer tick finishes.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from core.errors import NotFound, PermanentError, RetryableError, ValidationFailed, WorkHeld
from core.events import Envelope, event_id, new_event
from core.types import EndpointRef, ModelVersion, iso, parse_time
from retrain.deploy import parse_model
from retrain.gate import EvalReport, decide
from retrain.runs import DEADLINES, P, Phase, RunRecord, load, model_json, relay, transition

if TYPE_CHECKING:
    from retrain.deps import RetrainDeps

COMPLETED, ACCEPTED = "mlops.retrain.completed.v1", "mlops.challenger.accepted.v1"
PROMOTED, ROLLED_BACK = "mlops.model.promoted.v1", "mlops.model.rolled_back.v1"


def deadline(deps: "RetrainDeps", phase: Phase) -> timedelta:
    """How long a run may stay in `phase`: the configuration's, else the request timeout for a request,
    four bake periods for a canary (one with too little traffic to judge bakes until then), else
    retrain.runs.DEADLINES."""
    configured = getattr(deps.config, "deadlines", None) or {}
    if phase.value in configured:
        return configured[phase.value]
    if phase is P.REQUESTED:
        return deps.config.request_timeout
    if phase is P.CANARY:
        return 4 * deps.config.bake
    return DEADLINES[phase]


def on_deploy_event(envelope: Envelope, deps: "RetrainDeps") -> dict[str, Any] | None:
    """mlops.retrain.completed.v1 -> gate; mlops.challenger.accepted.v1 -> canary."""
    if envelope.type == COMPLETED:
        return _gate(envelope, deps)
    if envelope.type == ACCEPTED:
        return _canary(envelope, deps)
    raise ValidationFailed(f"deploy handler does not take {envelope.type}", field="type")


def _ahead(record: RunRecord, needs: Phase) -> None:
    """An event ahead of the state it needs: the message comes back (never completed while work is undone)."""
    before = {P.REQUESTED: 0, P.RUNNING: 1, P.TRAINED: 2, P.ACCEPTED: 3}
    if record.state in before and before[record.state] < before[needs]:
        raise WorkHeld(f"run {record.run_id} is {record.state.value}, not yet {needs.value}")


def _gate(envelope: Envelope, deps: "RetrainDeps") -> dict[str, Any] | None:
    record = load(deps.store, envelope.data["run_id"])
    _ahead(record, P.TRAINED)
    if record.state is not P.TRAINED:
        return None  # failed, or gated by an earlier delivery
    metrics = record.get("metrics") or {}
    challenger = EvalReport.from_flat(metrics, "challenger")
    if challenger is None:
        raise ValidationFailed(f"run {record.run_id} has no challenger metrics", field="metrics")
    target = deps.targets.get(record.endpoint)
    decision = decide(EvalReport.from_flat(metrics, "champion"), challenger, deps.config.gate,
                      target.task if target else "binary")
    kind = "accepted" if decision.accepted else "rejected"
    data = {"run_id": record.run_id, "endpoint": record.endpoint, "candidate": model_json(record.get("candidate")),
            "gate": decision.to_json(), "champion": record.get("champion")}
    event = envelope.caused(f"mlops.challenger.{kind}.v1", data, id=event_id(f"challenger.{kind}", record.run_id),
                            time=deps.clock.now())
    transition(deps.store, record.run_id, P.ACCEPTED if decision.accepted else P.REJECTED, deps.clock.now(),
               "; ".join(decision.reasons), expect=[P.TRAINED], deadline=deadline(deps, P.ACCEPTED), events=[event],
               gate=decision.to_json(), outcome=None if decision.accepted else {"result": "rejected",
                                                                               "reasons": decision.reasons})
    relay(deps.store, deps.publisher, record.run_id)
    return decision.to_json()


def _canary(envelope: Envelope, deps: "RetrainDeps") -> dict[str, Any] | None:
    record = load(deps.store, envelope.data["run_id"])
    _ahead(record, P.ACCEPTED)
    if record.state is not P.ACCEPTED:
        return None
    ref, candidate, now = EndpointRef(record.endpoint), parse_model(record["candidate"]), deps.clock.now()
    split = deps.deployer.start_canary(ref, candidate, deps.config.canary_percent)  # a repeat finds it deployed
    deployment = next(n for n, m in deps.deployer.models(ref).items() if m == candidate)
    step = {"step": "canary", "at": iso(now), "deployment": deployment, "traffic": dict(split.shares)}
    first = split.shares.get(deployment) == 100  # an endpoint with no model: nothing to compare with
    kind, state = (PROMOTED, P.PROMOTED) if first else ("mlops.canary.started.v1", P.CANARY)
    data = {"run_id": record.run_id, "endpoint": ref.name, "candidate": model_json(str(candidate)),
            "traffic": dict(split.shares), "deployment": deployment, "bake_until": iso(now + deps.config.bake)}
    if first:
        data.update(promoted_fields(deps, candidate))
    event = envelope.caused(kind, data, id=event_id(kind, record.run_id), time=now)
    transition(deps.store, record.run_id, state, now, expect=[P.ACCEPTED], deadline=deadline(deps, P.CANARY),
               events=[event], deployment_step=step, canary={"deployment": deployment, "started_at": iso(now)},
               outcome={"result": "promoted", "traffic": dict(split.shares)} if first else None)
    relay(deps.store, deps.publisher, record.run_id)
    return {"state": state.value, "traffic": dict(split.shares)}


def promoted_fields(deps: "RetrainDeps", candidate: ModelVersion) -> dict[str, Any]:
    """What the monitors need to follow the model in production: its version and its reference data."""
    try:
        lineage = deps.registry.get(candidate.name, candidate.version).get("lineage") or {}
    except NotFound:  # promoted all the same; the monitors keep the reference they have
        lineage = {}
    return {"model_version": str(candidate), "reference_uri": lineage.get("reference")}


def breaches(health: Any, deps: "RetrainDeps") -> list[str]:
    config, reasons = deps.config, []
    if health.requests < config.min_canary_requests:
        return reasons  # too few requests to judge either way
    if health.error_rate > config.max_error_rate:
        reasons.append(f"error rate {health.error_rate:.3f} over {config.max_error_rate} "
                       f"({health.errors} of {health.requests} requests)")
    if health.p95_latency_ms is not None and health.p95_latency_ms > config.max_p95_latency_ms:
        reasons.append(f"p95 latency {health.p95_latency_ms:.0f} ms over {config.max_p95_latency_ms:.0f} ms")
    return reasons


def watch_canary(record: RunRecord, deps: "RetrainDeps") -> str | None:
    """'rolled_back' | 'promoted' | None (still baking). A breach rolls back at once, before the bake ends."""
    if record.state is P.CANARY:
        record = _judge(record, deps)
        if record is None:
            return None
    if record.state is P.PROMOTING:
        return _promote(record, deps)
    if record.state is P.ROLLING_BACK:
        return _roll_back(record, deps)
    return None


def judge_or_reap(record: RunRecord, deps: "RetrainDeps") -> str | None:
    """A canary is judged even past its deadline (then it decides, saying why). If judging it fails there for a
    reason the product does not know (a bug, an untranslated error), the reaper rolls its traffic back and fails
    it: a canary never keeps its share of traffic past its deadline because its health could not be read."""
    if record.deadline is None or deps.clock.now() <= record.deadline:
        return watch_canary(record, deps)
    try:
        return watch_canary(record, deps)
    except (RetryableError, PermanentError):
        raise  # the tracking tick knows these: retried, or failed with the canary rolled back
    except Exception as exc:
        logging.getLogger("mlops.retrain").exception("run %s: judging the canary at its deadline failed",
                                                     record.run_id)
        return reap(record, deps, f"past its deadline {iso(record.deadline)} and its canary could not be judged: "
                                  f"{type(exc).__name__}: {exc}")


def _judge(record: RunRecord, deps: "RetrainDeps") -> RunRecord | None:
    """canary -> promoting | rolling_back (the decision and its health numbers saved before acting), or None.

    A canary with too few requests to judge keeps baking (a low-traffic endpoint's canary gets there, later);
    at its deadline it is judged one last time, and what still cannot be judged is rolled back, saying why."""
    canary, now = record["canary"], deps.clock.now()
    started = parse_time(canary["started_at"])
    due = record.deadline is not None and now >= record.deadline
    try:
        health = deps.health.deployment_health(record.endpoint, canary["deployment"], started, now)
    except RetryableError as exc:
        if not due:
            raise  # the next tick asks again
        return _decide(record, deps, P.ROLLING_BACK, [f"no health numbers by its deadline: {exc}"], None)
    numbers = {"requests": health.requests, "errors": health.errors, "error_rate": health.error_rate,
               "p95_latency_ms": health.p95_latency_ms, "since": iso(started), "until": iso(now)}
    reasons = breaches(health, deps)
    enough, baked = health.requests >= deps.config.min_canary_requests, now - started >= deps.config.bake
    if reasons:
        return _decide(record, deps, P.ROLLING_BACK, reasons, numbers)
    if baked and enough:
        return _decide(record, deps, P.PROMOTING, [f"healthy for {now - started}"], numbers)
    if due:
        reason = (f"only {health.requests} canary requests in {now - started}, fewer than the "
                  f"{deps.config.min_canary_requests} needed to judge its health" if not enough
                  else f"its deadline came {now - started} in, before a bake period of {deps.config.bake}")
        return _decide(record, deps, P.ROLLING_BACK, [reason], numbers)
    return None


def _decide(record: RunRecord, deps: "RetrainDeps", to: Phase, reasons: list[str],
            numbers: dict[str, Any] | None) -> RunRecord | None:
    decision = {"reasons": reasons, "health": numbers}
    if to is P.ROLLING_BACK:
        decision["then"] = P.ROLLED_BACK.value
    return transition(deps.store, record.run_id, to, deps.clock.now(), "; ".join(reasons), expect=[P.CANARY],
                      deadline=deadline(deps, to), decision=decision)


def _promote(record: RunRecord, deps: "RetrainDeps") -> str | None:
    ref, candidate, now = EndpointRef(record.endpoint), parse_model(record["candidate"]), deps.clock.now()
    split = deps.deployer.promote(ref, candidate)
    decision = record.get("decision") or {}
    data = {"run_id": record.run_id, "endpoint": ref.name, "candidate": model_json(str(candidate)),
            "traffic": dict(split.shares), "health": decision.get("health"),
            "reason": "; ".join(decision.get("reasons", [])), **promoted_fields(deps, candidate)}
    event = new_event(PROMOTED, data, id=event_id(PROMOTED, record.run_id), subject=ref.name, time=now,
                      correlationid=record.run_id)
    step = {"step": "promote", "at": iso(now), "traffic": dict(split.shares), "health": decision.get("health"),
            "reasons": decision.get("reasons", [])}
    done = transition(deps.store, record.run_id, P.PROMOTED, now, expect=[P.PROMOTING], events=[event],
                      deployment_step=step, outcome={"result": "promoted", "reasons": decision.get("reasons", []),
                                                     "traffic": dict(split.shares)})
    relay(deps.store, deps.publisher, record.run_id)
    return "promoted" if done else None


def _roll_back(record: RunRecord, deps: "RetrainDeps") -> str | None:
    ref, now = EndpointRef(record.endpoint), deps.clock.now()
    split = deps.deployer.rollback(ref)
    decision = record.get("decision") or {}
    reasons, then = decision.get("reasons", []), Phase(decision.get("then", P.ROLLED_BACK.value))
    data = {"run_id": record.run_id, "endpoint": ref.name, "candidate": model_json(record.get("candidate")),
            "traffic": dict(split.shares), "health": decision.get("health"), "reason": "; ".join(reasons)}
    event = new_event(ROLLED_BACK, data, id=event_id(ROLLED_BACK, record.run_id), subject=ref.name, time=now,
                      correlationid=record.run_id)
    step = {"step": "rollback", "at": iso(now), "traffic": dict(split.shares), "health": decision.get("health"),
            "reasons": reasons}
    outcome = {"result": then.value, "reasons": reasons, "traffic": dict(split.shares)}
    if then is P.FAILED:
        outcome.update(step=decision.get("step"), error="; ".join(reasons))
    done = transition(deps.store, record.run_id, then, now, expect=[P.ROLLING_BACK], events=[event],
                      deployment_step=step, outcome=outcome)
    relay(deps.store, deps.publisher, record.run_id)
    return "rolled_back" if done else None


def reap(record: RunRecord, deps: "RetrainDeps", reason: str) -> str | None:
    """Fail a run that cannot go on (past its deadline, or a permanent error): a run that may hold canary
    traffic is rolled back first; the others fail at once. Every step is a recorded transition."""
    now = deps.clock.now()
    if record.state in (P.ACCEPTED, P.CANARY, P.PROMOTING):
        record = transition(deps.store, record.run_id, P.ROLLING_BACK, now, reason, expect=[record.state],
                            deadline=deadline(deps, P.ROLLING_BACK), by="reaper",
                            decision={"reasons": [reason], "then": P.FAILED.value, "step": record.state.value})
        return _roll_back(record, deps) if record is not None else None
    if record.state is P.ROLLING_BACK and (record.deadline is None or now <= record.deadline):
        return _roll_back(record, deps)
    done = transition(deps.store, record.run_id, P.FAILED, now, reason, expect=[record.state], by="reaper",
                      error=reason, outcome={"result": "failed", "step": record.state.value, "error": reason})
    return "failed" if done else None
