"""The canary's bake period: promote once it has served enough traffic healthily, roll back on a breach."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from core.errors import NotFound
from core.events import event_id, new_event
from core.types import EndpointRef, ModelVersion, iso, parse_time
from retrain.deploy import parse_model
from retrain.runs import model_json, transition

if TYPE_CHECKING:
    from retrain.deps import RetrainDeps


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


def watch_canary(record: Mapping[str, Any], deps: "RetrainDeps") -> str | None:
    """'rolled_back' | 'promoted' | None (still baking). A breach rolls back at once, before the bake ends."""
    canary, now = record["canary"], deps.clock.now()
    started = parse_time(canary["started_at"])
    health = deps.health.deployment_health(record["endpoint"], canary["deployment"], started, now)
    numbers = {"requests": health.requests, "errors": health.errors, "error_rate": health.error_rate,
               "p95_latency_ms": health.p95_latency_ms, "since": iso(started), "until": iso(now)}
    reasons = breaches(health, deps)
    baked = now - started >= deps.config.bake
    starved = now - started >= 3 * deps.config.bake and health.requests < deps.config.min_canary_requests
    if starved:
        reasons = [f"only {health.requests} canary requests in {now - started}; cannot judge its health"]
    if reasons:
        return _finish(record, deps, "rolled_back", numbers, reasons)
    if baked and health.requests >= deps.config.min_canary_requests:
        return _finish(record, deps, "promoted", numbers, [f"healthy for {now - started}"])
    return None


def _finish(record: Mapping[str, Any], deps: "RetrainDeps", outcome: str, numbers: dict[str, Any],
            reasons: list[str]) -> str:
    ref, candidate, now = EndpointRef(record["endpoint"]), parse_model(record["candidate"]), deps.clock.now()
    split = deps.deployer.rollback(ref) if outcome == "rolled_back" else deps.deployer.promote(ref, candidate)
    data = {"run_id": record["run_id"], "endpoint": ref.name, "candidate": model_json(str(candidate)),
            "traffic": dict(split.shares), "health": numbers, "reason": "; ".join(reasons)}
    if outcome == "promoted":
        data.update(promoted_fields(deps, candidate))
    kind = "mlops.model.rolled_back.v1" if outcome == "rolled_back" else "mlops.model.promoted.v1"
    deps.publisher.publish(new_event(kind, data, id=event_id(kind, record["run_id"]), subject=ref.name, time=now,
                                     correlationid=record["run_id"]))
    step = {"step": "rollback" if outcome == "rolled_back" else "promote", "at": iso(now),
            "traffic": dict(split.shares), "health": numbers, "reasons": reasons}
    transition(deps.store, record["run_id"], {"canary"}, outcome, now, note="; ".join(reasons),
               deployment=[*record["deployment"], step],
               outcome={"result": outcome, "reasons": reasons, "traffic": dict(split.shares)})
    return outcome
