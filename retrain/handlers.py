"""Retrain handlers: plain functions of (input, deps), wired to HTTP, bus and timer by `functions/`.

request_retrain (HTTP) -> mlops.retrain.requested.v1 -> on_retrain_event: policy, export labelled data,
submit -> mlops.retrain.started.v1 -> track_runs (timer): run finished -> mlops.retrain.completed.v1 ->
on_deploy_event: gate -> challenger.accepted / rejected -> canary -> track_runs: promote or roll back.

Every step is a transition of the run's typed record (retrain.runs): the state is saved with the events that
announce it, then they are relayed. A redelivered event or a repeated timer tick finds the transition already
made and changes nothing; an event that arrives before the state it needs lets its message come back
(WorkHeld). The tracking timer also relays what a crash left unsent and reaps runs past their state's
deadline (a canary's traffic is rolled back first). One endpoint's failure never stops another's tracking.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Mapping

from core.errors import ConcurrencyConflict, PermanentError, RetryableError, ValidationFailed
from core.events import Envelope, event_id, new_event
from core.records import already_processed, mark_processed
from core.types import EndpointRef, ModelVersion, RunRef, RunState, Window, iso, parse_time
from retrain.deploy_watch import deadline, judge_or_reap, on_deploy_event, reap, watch_canary
from retrain.deps import RetrainDeps, RetrainTarget
from retrain.export import export_labelled
from retrain.policy import (
    PolicyDecision,
    active_run,
    enough_rows,
    last_data_end,
    may_start,
    performance_at_risk,
    stale_champion,
)
from retrain.runs import (
    P,
    RunRecord,
    all_runs,
    endpoint_runs,
    insert,
    load,
    model_json,
    new_record,
    relay,
    run_id_for,
    summary,
    transition,
)

__all__ = ["get_run", "on_deploy_event", "on_retrain_event", "request_retrain", "track_runs"]
log = logging.getLogger("mlops.retrain")
DRIFT, REQUESTED = "mlops.drift.detected.v1", "mlops.retrain.requested.v1"
COMPLETED = "mlops.retrain.completed.v1"


def request_retrain(endpoint: str, reason: str, *, trigger: Mapping[str, Any], idempotency_key: str | None,
                    window: Window | None = None, deps: RetrainDeps) -> dict[str, Any]:
    """Record a retrain request and publish it. A repeated key, or an active run, returns that run."""
    _target(deps, endpoint)
    key = idempotency_key or f"anonymous:{uuid.uuid4()}"
    run_id = run_id_for(endpoint, key)
    found = deps.store.get("run", run_id)
    if found is not None:
        return summary(found.data, existing=True)
    busy = active_run(endpoint_runs(deps.store, endpoint))
    if busy:
        return {**summary(load(deps.store, busy), existing=True), "note": "a retrain is already active"}
    now = deps.clock.now()
    requested = new_event(REQUESTED, {
        "endpoint": endpoint, "reason": reason, "trigger": dict(trigger), "run_id": run_id,
        "idempotency_key": key, "window": window.to_json() if window else None},
        id=event_id("retrain.requested", run_id), subject=endpoint, time=now, correlationid=run_id)
    record = new_record(run_id, endpoint, reason, trigger, key, window.to_json() if window else None, now,
                        deadline=deadline(deps, P.REQUESTED), events=[requested])
    try:
        insert(deps.store, record)  # the request and its event in one write; relayed below or by the timer
    except ConcurrencyConflict:
        return summary(load(deps.store, run_id), existing=True)
    relay(deps.store, deps.publisher, run_id)
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
    run_id = run_id_for(endpoint, f"drift:{envelope.id}")
    # drift alone warns; it retrains only when the window's performance is at risk
    risk = performance_at_risk(data.get("performance"), deps.config.retrain)
    if not risk.allowed and deps.config.retrain.max_model_age is not None:
        stale = stale_champion(_trained_until(deps, endpoint), deps.clock.now(), deps.config.retrain)
        risk = stale if stale.allowed else PolicyDecision(False, risk.reasons + stale.reasons)
    if deps.store.get("run", run_id) is None:  # a redelivery after the run began goes straight to _start
        decision = risk if not risk.allowed else may_start(endpoint_runs(deps.store, endpoint), deps.clock.now(),
                                                           deps.config.retrain, drift=True)
        if not decision.allowed:  # drift repeats every window: a refusal is logged, not recorded as a run
            log.info("drift on %s does not start a retrain: %s", endpoint, "; ".join(decision.reasons))
            return {"started": False, "reasons": decision.reasons, "active_run": decision.active_run}
    trigger = {"kind": "drift", "event_id": envelope.id, "incident_id": data.get("incident_id"),
               "check_id": data.get("check_id"), "monitor": data.get("monitor")}
    reason = (f"drift: {', '.join(data.get('drifted_features') or []) or data.get('signal', 'drift')}; "
              f"{risk.reasons[0]}")
    _ensure_record(deps, run_id, endpoint, reason, trigger, f"drift:{envelope.id}", None)
    return _start(run_id, envelope, deps)


def _trained_until(deps: RetrainDeps, endpoint: str):
    """End of the champion's training window, from its registry lineage (None if unknown)."""
    champion = champion_of(deps, endpoint)
    if champion is None:
        return None
    window = (deps.registry.get(champion.name, champion.version).get("lineage") or {}).get("training_window") or {}
    return parse_time(window["end"]) if window.get("end") else None


def _from_request(envelope: Envelope, deps: RetrainDeps) -> dict[str, Any] | None:
    data, endpoint = envelope.data, envelope.data["endpoint"]
    _target(deps, endpoint)
    key = data.get("idempotency_key") or envelope.id
    run_id = data.get("run_id") or run_id_for(endpoint, key)
    _ensure_record(deps, run_id, endpoint, data["reason"], data["trigger"], key, data.get("window"))
    return _start(run_id, envelope, deps)


def _ensure_record(deps: RetrainDeps, run_id: str, endpoint: str, reason: str, trigger: Mapping[str, Any],
                   key: str, window: Mapping[str, str] | None) -> None:
    if deps.store.get("run", run_id) is None:
        # A concurrent delivery may insert it first: then the state guard in _start decides who proceeds.
        with contextlib.suppress(ConcurrencyConflict):
            insert(deps.store, new_record(run_id, endpoint, reason, trigger, key, window, deps.clock.now(),
                                          deadline=deadline(deps, P.REQUESTED)))


def _start(run_id: str, cause: Envelope, deps: RetrainDeps) -> dict[str, Any]:
    record = load(deps.store, run_id)
    if record.state is not P.REQUESTED:
        return summary(record, existing=True)
    endpoint, now = record.endpoint, deps.clock.now()
    target = _target(deps, endpoint)
    history = [r for r in endpoint_runs(deps.store, endpoint) if _counts_before(r, record)]
    decision = may_start(history, now, deps.config.retrain, run_id=run_id,
                         drift=(record.trigger or {}).get("kind") == "drift")
    window = (Window(parse_time(record.window["start"]), parse_time(record.window["end"]))
              if record.window else Window(now - target.lookback, now))
    if decision.allowed:
        export = export_labelled(deps, target, window, run_id, since=last_data_end(history))
        decision = enough_rows(export["new_rows"], deps.config.retrain)
    if not decision.allowed:
        return _skip(deps, run_id, decision)
    champion = champion_of(deps, endpoint)
    try:
        request = _pipeline_request(deps, target, run_id, window, export["path"], champion, record)
        ref = deps.runner.submit(request, idempotency_key=run_id)  # idempotent: a retry finds the same run
    except PermanentError as exc:  # e.g. an invalid request: record why, so the endpoint is not blocked
        _fail(deps, run_id, "submit", exc)
        return summary(load(deps.store, run_id), existing=False)
    started = cause.caused("mlops.retrain.started.v1", {
        "run_id": run_id, "endpoint": endpoint, "reason": record.reason, "backend": ref.backend,
        "external_id": ref.external_id, "window": window.to_json(), "champion": str(champion) if champion else None},
        id=event_id("retrain.started", run_id), subject=endpoint, time=now)
    done = transition(deps.store, run_id, P.RUNNING, now, deadline=deadline(deps, P.RUNNING), events=[started],
                      submitted_at=iso(now), window=window.to_json(), data=export,
                      champion=str(champion) if champion else None, policy=deps.config.retrain.to_json(),
                      run={"run_id": ref.run_id, "backend": ref.backend, "external_id": ref.external_id})
    relay(deps.store, deps.publisher, run_id)
    return summary(done or load(deps.store, run_id), existing=done is None)


def _counts_before(other: Mapping[str, Any], mine: RunRecord) -> bool:
    """Two requests racing: the earlier one (by time, then id) wins; the later sees it as active."""
    if other["run_id"] == mine.run_id:
        return False
    if other["state"] != P.REQUESTED:
        return True
    return (other["requested_at"], other["run_id"]) < (iso(mine.requested_at), mine.run_id)


def _skip(deps: RetrainDeps, run_id: str, decision: PolicyDecision) -> dict[str, Any]:
    done = transition(deps.store, run_id, P.SKIPPED, deps.clock.now(), "; ".join(decision.reasons),
                      outcome={"result": "skipped", "reasons": decision.reasons, "active_run": decision.active_run})
    return summary(done or load(deps.store, run_id), existing=done is None)


def _pipeline_request(deps: RetrainDeps, target: RetrainTarget, run_id: str, window: Window, recent: str,
                      champion: ModelVersion | None, record: RunRecord) -> dict[str, Any]:
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
            "requested_at": iso(record.requested_at), **target.training()}


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
    """Timer: relay unsent events; finished pipeline runs -> retrain.completed; canaries -> promote or roll back
    (at their deadline too: judged, with the reason); other runs past their state's deadline -> failed (rolled
    back first). Each run on its own: one endpoint's
    failure (an outage, an SDK error) is logged and the others are still tracked; the tick then fails."""
    counts = {"completed": 0, "promoted": 0, "rolled_back": 0}
    unexpected: list[str] = []
    for record in all_runs(deps.store):
        try:
            relay(deps.store, deps.publisher, record.run_id)
            outcome = _track(load(deps.store, record.run_id), deps)
            if outcome in counts:
                counts[outcome] += 1
        except RetryableError as exc:  # one unreachable run must not stop the others; the next tick retries
            log.warning("run %s: %s; will retry", record.run_id, exc)
        except PermanentError as exc:  # e.g. the runner lost the run: record it, keep tracking the others
            _fail(deps, record.run_id, record.state.value, exc)
        except Exception as exc:  # a bug or an untranslated SDK error: keep going, then fail this tick loudly
            log.exception("run %s: tracking failed", record.run_id)
            unexpected.append(f"{record.run_id}: {type(exc).__name__}: {exc}")
    if unexpected:
        raise RuntimeError(f"tracking failed for {len(unexpected)} run(s): {'; '.join(unexpected)}")
    return counts


def _track(record: RunRecord, deps: RetrainDeps) -> str | None:
    if record.state.terminal:
        return None
    if record.state is P.CANARY:  # judged even past its deadline: then it decides, with the reason
        return judge_or_reap(record, deps)
    if record.deadline is not None and deps.clock.now() > record.deadline:
        return reap(record, deps, f"no progress in state {record.state.value} before its deadline "
                                  f"{iso(record.deadline)}")
    if record.state is P.RUNNING:
        return "completed" if _poll_run(record, deps) else None
    if record.state in (P.CANARY, P.PROMOTING, P.ROLLING_BACK):
        return watch_canary(record, deps)
    return None


def _fail(deps: RetrainDeps, run_id: str, step: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"
    log.error("run %s failed at %s: %s", run_id, step, error)
    if transition(deps.store, run_id, P.FAILED, deps.clock.now(), error, error=error,
                  outcome={"result": "failed", "step": step, "error": error}) is None:
        record = load(deps.store, run_id)
        if not record.state.terminal:  # a canary: its traffic goes back to the champion before it fails
            reap(record, deps, error)


def _poll_run(record: RunRecord, deps: RetrainDeps) -> bool:
    status = deps.runner.status(RunRef(**record["run"]))
    if not status.state.terminal:
        return False
    run_id, now = record.run_id, deps.clock.now()
    candidate = str(status.model) if status.model else None
    completed = new_event(COMPLETED, {"run_id": run_id, "endpoint": record.endpoint, "status": status.state.value,
                                      "candidate": model_json(candidate), "failed_step": status.failed_step,
                                      "error": status.error},
                          id=event_id("retrain.completed", run_id), subject=record.endpoint, time=now,
                          correlationid=run_id)
    ok = status.state is RunState.SUCCEEDED
    transition(deps.store, run_id, P.TRAINED if ok else P.FAILED, now, status.error, expect=[P.RUNNING],
               deadline=deadline(deps, P.TRAINED), events=[completed], completed_at=iso(now),
               metrics=dict(status.metrics), candidate=candidate, steps=dict(status.steps),
               failed_step=status.failed_step, error=status.error,
               outcome=None if ok else {"result": "failed", "step": status.failed_step, "error": status.error})
    relay(deps.store, deps.publisher, run_id)
    return True


def get_run(run_id: str, deps: RetrainDeps) -> dict[str, Any]:
    """The audit record of one retrain, for GET /api/runs/{id}. Unknown id -> NotFound."""
    doc = load(deps.store, run_id).to_json()
    doc.pop("outbox", None)  # plumbing, not audit
    return doc


def _target(deps: RetrainDeps, endpoint: str) -> RetrainTarget:
    target = deps.targets.get(endpoint)
    if target is None:
        known = ", ".join(sorted(deps.targets)[:20]) or "none"
        raise ValidationFailed(f"endpoint {endpoint!r} has no retraining configured (known: {known})",
                               field="endpoint")
    return target
