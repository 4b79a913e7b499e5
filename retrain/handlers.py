"""Retrain handlers: plain functions of (input, deps), wired to HTTP, bus and timer by `functions/`.

request_retrain (HTTP) -> mlops.retrain.requested.v1 -> on_retrain_event: policy, export labelled data,
submit -> mlops.retrain.started.v1 -> track_runs (timer): run finished -> mlops.retrain.completed.v1 ->
on_deploy_event: gate -> challenger.accepted / rejected -> canary -> track_runs: promote or roll back.

Every step is guarded by the run record's state and publishes events with ids derived from the run id,
so a redelivered event or a repeated timer tick changes nothing twice.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Mapping

from core.errors import ConcurrencyConflict, NotFound, PermanentError, RetryableError, ValidationFailed
from core.events import Envelope, event_id, new_event
from core.records import RUN, already_processed, mark_processed, require
from core.types import EndpointRef, ModelVersion, RunRef, RunState, Window, iso, parse_time
from retrain.deploy_watch import promoted_fields, watch_canary
from retrain.deps import RetrainDeps, RetrainTarget
from retrain.export import export_labelled
from retrain.gate import EvalReport, decide
from retrain.policy import PolicyDecision, active_run, enough_rows, last_data_end, may_start
from retrain.runs import endpoint_runs, model_json, new_record, run_id_for, summary, transition

log = logging.getLogger("mlops.retrain")
DRIFT, REQUESTED = "mlops.drift.detected.v1", "mlops.retrain.requested.v1"
COMPLETED, ACCEPTED = "mlops.retrain.completed.v1", "mlops.challenger.accepted.v1"


def request_retrain(endpoint: str, reason: str, *, trigger: Mapping[str, Any], idempotency_key: str | None,
                    window: Window | None = None, deps: RetrainDeps) -> dict[str, Any]:
    """Record a retrain request and publish it. A repeated key, or an active run, returns that run."""
    _target(deps, endpoint)
    key = idempotency_key or f"anonymous:{uuid.uuid4()}"
    run_id = run_id_for(endpoint, key)
    found = deps.store.get(RUN, run_id)
    if found is not None:
        return summary(found.data, existing=True)
    busy = active_run(endpoint_runs(deps.store, endpoint))
    if busy:
        return {**summary(require(deps.store, RUN, busy).data, existing=True), "note": "a retrain is already active"}
    now = deps.clock.now()
    record = new_record(run_id, endpoint, reason, trigger, key, window.to_json() if window else None, now)
    try:
        deps.store.insert(RUN, run_id, record)
    except ConcurrencyConflict:
        return summary(require(deps.store, RUN, run_id).data, existing=True)
    deps.publisher.publish(new_event(REQUESTED, {
        "endpoint": endpoint, "reason": reason, "trigger": dict(trigger), "run_id": run_id,
        "idempotency_key": key, "window": record["window"]}, id=event_id("retrain.requested", run_id),
        subject=endpoint, time=now, correlationid=run_id))
    return summary(record, existing=False)


def on_retrain_event(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    """mlops.retrain.requested.v1, or mlops.drift.detected.v1 when its monitor allows retraining."""
    if already_processed(deps.store, "retrain-handler", envelope.id):
        return None
    if envelope.type == DRIFT:
        result = _from_drift(envelope, deps)
    elif envelope.type == REQUESTED:
        result = _from_request(envelope, deps)
    else:
        raise ValidationFailed(f"retrain handler does not take {envelope.type}", field="type")
    mark_processed(deps.store, "retrain-handler", envelope.id, deps.clock.now())
    return result


def _from_drift(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    data, endpoint = envelope.data, envelope.data["endpoint"]
    if not data.get("retrain_allowed") or endpoint not in deps.targets:
        return None
    decision = may_start(endpoint_runs(deps.store, endpoint), deps.clock.now(), deps.config.retrain)
    if not decision.allowed:  # drift repeats every window: a refusal is logged, not recorded as a run
        log.info("drift on %s does not start a retrain: %s", endpoint, "; ".join(decision.reasons))
        return {"started": False, "reasons": decision.reasons, "active_run": decision.active_run}
    run_id = run_id_for(endpoint, f"drift:{envelope.id}")
    trigger = {"kind": "drift", "event_id": envelope.id, "incident_id": data.get("incident_id"),
               "check_id": data.get("check_id"), "monitor": data.get("monitor")}
    reason = f"drift: {', '.join(data.get('drifted_features') or []) or data.get('signal', 'drift')}"
    _ensure_record(deps, run_id, endpoint, reason, trigger, f"drift:{envelope.id}", None)
    return _start(run_id, envelope, deps)


def _from_request(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    data, endpoint = envelope.data, envelope.data["endpoint"]
    _target(deps, endpoint)
    key = data.get("idempotency_key") or envelope.id
    run_id = data.get("run_id") or run_id_for(endpoint, key)
    _ensure_record(deps, run_id, endpoint, data["reason"], data["trigger"], key, data.get("window"))
    return _start(run_id, envelope, deps)


def _ensure_record(deps: RetrainDeps, run_id: str, endpoint: str, reason: str, trigger: Mapping[str, Any],
                   key: str, window: Mapping[str, str] | None) -> None:
    if deps.store.get(RUN, run_id) is None:
        # A concurrent delivery may insert it first: then the state guard in _start decides who proceeds.
        with contextlib.suppress(ConcurrencyConflict):
            deps.store.insert(RUN, run_id, new_record(run_id, endpoint, reason, trigger, key, window,
                                                      deps.clock.now()))


def _start(run_id: str, cause: Envelope, deps: RetrainDeps) -> dict[str, Any]:
    record = require(deps.store, RUN, run_id).data
    if record["state"] != "requested":
        return summary(record, existing=True)
    endpoint, now = record["endpoint"], deps.clock.now()
    target = _target(deps, endpoint)
    history = [r for r in endpoint_runs(deps.store, endpoint) if _counts_before(r, record)]
    decision = may_start(history, now, deps.config.retrain, run_id=run_id)
    window = (Window(parse_time(record["window"]["start"]), parse_time(record["window"]["end"]))
              if record.get("window") else Window(now - target.lookback, now))
    if decision.allowed:
        export = export_labelled(deps, target, window, run_id, since=last_data_end(history))
        decision = enough_rows(export["new_rows"], deps.config.retrain)
    if not decision.allowed:
        return _skip(deps, run_id, decision)
    champion = champion_of(deps, endpoint)
    try:
        request = _pipeline_request(deps, target, run_id, window, export["path"], champion, record)
        ref = deps.runner.submit(request, idempotency_key=run_id)
    except PermanentError as exc:  # e.g. an invalid request: record why, so the endpoint is not blocked
        _fail(deps, run_id, {"requested"}, "submit", exc)
        return summary(require(deps.store, RUN, run_id).data, existing=False)
    deps.publisher.publish(cause.caused("mlops.retrain.started.v1", {
        "run_id": run_id, "endpoint": endpoint, "backend": ref.backend, "external_id": ref.external_id,
        "window": window.to_json(), "champion": str(champion) if champion else None},
        id=event_id("retrain.started", run_id), subject=endpoint, time=now))
    done = transition(deps.store, run_id, {"requested"}, "running", now, submitted_at=iso(now),
                      window=window.to_json(), data=export, champion=str(champion) if champion else None,
                      run={"run_id": ref.run_id, "backend": ref.backend, "external_id": ref.external_id},
                      policy=deps.config.retrain.to_json())
    return summary(done or require(deps.store, RUN, run_id).data, existing=done is None)


def _counts_before(other: Mapping[str, Any], mine: Mapping[str, Any]) -> bool:
    """Two requests racing: the earlier one (by time, then id) wins; the later sees it as active."""
    if other["run_id"] == mine["run_id"]:
        return False
    if other["state"] != "requested":
        return True
    return (other["requested_at"], other["run_id"]) < (mine["requested_at"], mine["run_id"])


def _skip(deps: RetrainDeps, run_id: str, decision: PolicyDecision) -> dict[str, Any]:
    note = "; ".join(decision.reasons)
    done = transition(deps.store, run_id, {"requested"}, "skipped", deps.clock.now(), note=note,
                      outcome={"result": "skipped", "reasons": decision.reasons,
                               "active_run": decision.active_run})
    return summary(done or require(deps.store, RUN, run_id).data, existing=done is None)


def _pipeline_request(deps: RetrainDeps, target: RetrainTarget, run_id: str, window: Window, recent: str,
                      champion: ModelVersion | None, record: Mapping[str, Any]) -> dict[str, Any]:
    if not any(target.training().values()):
        raise ValidationFailed(f"endpoint {target.endpoint!r} has no training step: set endpoints."
                               f"{target.endpoint}.train in the retrain config (docs/training.md)", field="train")
    champion_path = None
    if champion is not None:
        champion_path = str(deps.registry.get(champion.name, champion.version)["path"])
    return {"run_id": run_id, "endpoint": target.endpoint, "model_name": target.model_name,
            "features": dict(target.features), "label": target.label, "task": target.task,
            "time_column": target.time_column, "reference": target.reference, "recent": recent, "rule": target.rule,
            "holdout_days": target.holdout_days, "slices": list(target.slices), "champion": champion_path,
            "parent": str(champion) if champion else None, "window": window.to_json(),
            "requested_at": record["requested_at"], **target.training()}


def champion_of(deps: RetrainDeps, endpoint: str) -> ModelVersion | None:
    """The model behind the deployment taking most traffic (not a canary)."""
    ref = EndpointRef(endpoint)
    shares = dict(deps.deployer.current(ref).shares)
    if not shares:
        return None
    canary = deps.deployer.canary(ref) if hasattr(deps.deployer, "canary") else None
    ranked = sorted((share, name) for name, share in shares.items() if name != canary and share > 0)
    return deps.deployer.models(ref).get(ranked[-1][1]) if ranked else None


def track_runs(deps: RetrainDeps) -> dict[str, int]:
    """Timer: finished pipeline runs -> retrain.completed; canaries -> promote or roll back."""
    counts = {"completed": 0, "promoted": 0, "rolled_back": 0}
    for _, doc in deps.store.list(RUN):
        record = doc.data
        try:
            if record["state"] == "running":
                counts["completed"] += _poll_run(record, deps)
            elif record["state"] == "canary":
                outcome = watch_canary(record, deps)
                if outcome:
                    counts[outcome] += 1
            elif record["state"] == "requested" and _stale(record, deps):
                _fail(deps, record["run_id"], {"requested"}, "start",
                      NotFound(f"never started within {deps.config.request_timeout} (its event was lost?)"))
        except RetryableError as exc:  # one unreachable run must not stop the others; the next tick retries
            log.warning("run %s: %s; will retry", record["run_id"], exc)
        except PermanentError as exc:  # e.g. the runner lost the run: record it, keep tracking the others
            _fail(deps, record["run_id"], {record["state"]}, record["state"], exc)
    return counts


def _stale(record: Mapping[str, Any], deps: RetrainDeps) -> bool:
    return deps.clock.now() - parse_time(record["requested_at"]) > deps.config.request_timeout


def _fail(deps: RetrainDeps, run_id: str, expect: set[str], step: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"
    log.error("run %s failed at %s: %s", run_id, step, error)
    transition(deps.store, run_id, expect, "failed", deps.clock.now(), note=error, error=error,
               outcome={"result": "failed", "step": step, "error": error})


def _poll_run(record: Mapping[str, Any], deps: RetrainDeps) -> int:
    status = deps.runner.status(RunRef(**record["run"]))
    if not status.state.terminal:
        return 0
    run_id, now = record["run_id"], deps.clock.now()
    candidate = str(status.model) if status.model else None
    data = {"run_id": run_id, "endpoint": record["endpoint"], "status": status.state.value,
            "candidate": model_json(candidate),
            "failed_step": status.failed_step, "error": status.error}
    deps.publisher.publish(new_event(COMPLETED, data, id=event_id("retrain.completed", run_id),
                                     subject=record["endpoint"], time=now, correlationid=run_id))
    ok = status.state is RunState.SUCCEEDED
    transition(deps.store, run_id, {"running"}, "trained" if ok else "failed", now, note=status.error,
               completed_at=iso(now), metrics=dict(status.metrics), candidate=candidate, steps=dict(status.steps),
               failed_step=status.failed_step, error=status.error,
               outcome=None if ok else {"result": "failed", "step": status.failed_step, "error": status.error})
    return 1


def on_deploy_event(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    """mlops.retrain.completed.v1 -> gate; mlops.challenger.accepted.v1 -> canary."""
    if envelope.type == COMPLETED:
        return _gate(envelope, deps)
    if envelope.type == ACCEPTED:
        return _canary(envelope, deps)
    raise ValidationFailed(f"deploy handler does not take {envelope.type}", field="type")


def _gate(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    record = _record(deps, envelope.data["run_id"])
    if record["state"] != "trained":
        return None  # failed, or gated by an earlier delivery
    challenger = EvalReport.from_flat(record.get("metrics", {}), "challenger")
    if challenger is None:
        raise ValidationFailed(f"run {record['run_id']} has no challenger metrics", field="metrics")
    task = deps.targets[record["endpoint"]].task if record["endpoint"] in deps.targets else "binary"
    decision = decide(EvalReport.from_flat(record["metrics"], "champion"), challenger, deps.config.gate, task)
    kind = "accepted" if decision.accepted else "rejected"
    data = {"run_id": record["run_id"], "endpoint": record["endpoint"], "candidate": model_json(record["candidate"]),
            "gate": decision.to_json(), "champion": record.get("champion")}
    deps.publisher.publish(envelope.caused(f"mlops.challenger.{kind}.v1", data,
                                           id=event_id(f"challenger.{kind}", record["run_id"]),
                                           time=deps.clock.now()))
    transition(deps.store, record["run_id"], {"trained"}, kind, deps.clock.now(), note="; ".join(decision.reasons),
               gate=decision.to_json(), outcome=None if decision.accepted else {
                   "result": "rejected", "reasons": decision.reasons})
    return decision.to_json()


def _canary(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    record = _record(deps, envelope.data["run_id"])
    if record["state"] != "accepted":
        return None
    from retrain.deploy import parse_model

    ref, candidate, now = EndpointRef(record["endpoint"]), parse_model(record["candidate"]), deps.clock.now()
    split = deps.deployer.start_canary(ref, candidate, deps.config.canary_percent)
    deployment = next(n for n, m in deps.deployer.models(ref).items() if m == candidate)
    step = {"step": "canary", "at": iso(now), "deployment": deployment, "traffic": dict(split.shares)}
    first = split.shares.get(deployment) == 100  # an endpoint with no model: nothing to compare with
    kind, state = ("mlops.model.promoted.v1", "promoted") if first else ("mlops.canary.started.v1", "canary")
    data = {"run_id": record["run_id"], "endpoint": ref.name, "candidate": model_json(str(candidate)),
            "traffic": dict(split.shares), "deployment": deployment, "bake_until": iso(now + deps.config.bake)}
    if first:
        data.update(promoted_fields(deps, candidate))
    deps.publisher.publish(envelope.caused(kind, data, id=event_id(kind, record["run_id"]), time=now))
    transition(deps.store, record["run_id"], {"accepted"}, state, now, deployment=[*record["deployment"], step],
               canary={"deployment": deployment, "started_at": iso(now)},
               outcome={"result": "promoted", "traffic": dict(split.shares)} if first else None)
    return {"state": state, "traffic": dict(split.shares)}


def get_run(run_id: str, deps: RetrainDeps) -> dict[str, Any]:
    """The audit record of one retrain, for GET /api/runs/{id}. Unknown id -> NotFound."""
    return dict(_record(deps, run_id))


def _record(deps: RetrainDeps, run_id: str) -> dict[str, Any]:
    doc = deps.store.get(RUN, run_id)
    if doc is None:
        raise NotFound(f"no retrain run {run_id!r}")
    return dict(doc.data)


def _target(deps: RetrainDeps, endpoint: str) -> RetrainTarget:
    target = deps.targets.get(endpoint)
    if target is None:
        known = ", ".join(sorted(deps.targets)) or "none"
        raise ValidationFailed(f"endpoint {endpoint!r} has no retraining configured (known: {known})",
                               field="endpoint")
    return target
