"""The read side of retraining for people: runs with their gate reasons, and who serves each endpoint.

Reads the run records (kind core.records.RUN) and the deployer; writes nothing.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from core.errors import MlopsError
from core.paging import Page, PageRequest, paginate
from core.ports import StateStore
from core.records import RUN
from core.types import EndpointRef

# The evidence a list row carries; the full record (every step's metrics, the export) is at /api/runs/{id}.
_ROW_FIELDS = ("run_id", "endpoint", "state", "reason", "requested_at", "finished_at", "champion", "candidate",
               "error", "failed_step")


def runs_page(store: StateStore, page: PageRequest, *, endpoint: str | None = None,
              state: str | None = None) -> Page:
    found = [dict(doc.data) for _, doc in store.list(RUN)]
    chosen = [r for r in found if (endpoint is None or r.get("endpoint") == endpoint)
              and (state is None or r.get("state") == state)]
    return paginate(chosen, lambda r: (str(r.get("requested_at", "")), str(r["run_id"])), page, render=run_summary)


def run_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: record.get(name) for name in _ROW_FIELDS}
    trigger = record.get("trigger") or {}
    gate = record.get("gate") or {}
    outcome = record.get("outcome") or {}
    out.update(trigger={k: trigger.get(k) for k in ("kind", "monitor", "incident_id", "check_id", "caller")
                        if trigger.get(k) is not None},
               gate={"accepted": gate.get("accepted"), "reasons": gate.get("reasons", [])} if gate else None,
               outcome=outcome.get("result"), outcome_reasons=outcome.get("reasons") or [],
               history=[{"at": h.get("at"), "state": h.get("state"), **({"note": h["note"]} if h.get("note") else {})}
                        for h in record.get("history", [])],
               deployment=record.get("deployment", []), url=f"/api/runs/{record['run_id']}")
    return out


def deployments(deployer: Any, endpoints: Iterable[str]) -> list[dict[str, Any]]:
    """Traffic per deployment and the model each serves, per endpoint; an unreachable endpoint says why."""
    rows = []
    for name in sorted(set(endpoints)):
        ref = EndpointRef(name)
        try:
            shares = dict(deployer.current(ref).shares)
            models = deployer.models(ref) if hasattr(deployer, "models") else {}
            canary = deployer.canary(ref) if hasattr(deployer, "canary") else None
        except MlopsError as exc:
            rows.append({"endpoint": name, "error": f"{type(exc).__name__}: {exc}", "deployments": []})
            continue
        rows.append({"endpoint": name, "canary": canary, "deployments": [
            {"name": d, "traffic": shares.get(d, 0), "model": str(models[d]) if d in models else None,
             "canary": d == canary} for d in sorted(set(shares) | set(models))]})
    return rows
