"""The retrain run record (state store kind core.records.RUN, key = run id): the audit trail of one retrain.

States: requested -> running -> trained -> accepted -> canary -> promoted | rolled_back, or a terminal
skipped (policy said no), failed (pipeline), rejected (gate). `history` lists every transition with its
time; `trigger`, `window`, `run`, `gate`, `deployment` and `outcome` hold the evidence.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Mapping

from core.ports import StateStore
from core.records import RUN, require
from core.retry import retry_on_conflict
from core.types import iso

TERMINAL = frozenset({"skipped", "failed", "rejected", "promoted", "rolled_back"})


def run_id_for(endpoint: str, idempotency_key: str) -> str:
    """The same (endpoint, key) always names the same run: repeats find it instead of making another."""
    digest = hashlib.sha256(f"{endpoint}\x1f{idempotency_key}".encode()).hexdigest()
    return f"rt-{digest[:20]}"


def new_record(run_id: str, endpoint: str, reason: str, trigger: Mapping[str, Any], idempotency_key: str,
               window: Mapping[str, str] | None, now: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "endpoint": endpoint, "reason": reason, "trigger": dict(trigger),
            "idempotency_key": idempotency_key, "window": dict(window) if window else None,
            "state": "requested", "requested_at": iso(now), "history": [{"at": iso(now), "state": "requested"}],
            "deployment": [], "outcome": None}


def endpoint_runs(store: StateStore, endpoint: str) -> list[dict[str, Any]]:
    return [dict(doc.data) for _, doc in store.list(RUN) if doc.data.get("endpoint") == endpoint]


def transition(store: StateStore, run_id: str, expect: set[str] | frozenset[str], state: str, now: datetime,
               note: str | None = None, **fields: Any) -> dict[str, Any] | None:
    """Move a run from one of `expect` to `state`, recording fields; None if it was not in `expect`
    (another delivery got there first). Optimistic concurrency: re-read and retry on a lost race."""
    def attempt() -> dict[str, Any] | None:
        doc = require(store, RUN, run_id)
        if doc.data["state"] not in expect:
            return None
        data = {**doc.data, **fields, "state": state}
        entry = {"at": iso(now), "state": state, **({"note": note} if note else {})}
        data["history"] = [*doc.data.get("history", []), entry]
        if state in TERMINAL:
            data["finished_at"] = iso(now)
        store.replace(RUN, run_id, data, doc.etag)
        return data

    return retry_on_conflict(attempt, what=f"run {run_id}")


def model_json(text: str | None) -> dict[str, str] | None:
    """'name:version' -> {"name", "version"}: how events carry a model."""
    if not text:
        return None
    name, _, version = text.rpartition(":")
    return {"name": name, "version": version}


def summary(record: Mapping[str, Any], *, existing: bool) -> dict[str, Any]:
    return {"run_id": record["run_id"], "endpoint": record["endpoint"], "state": record["state"],
            "existing": existing, "requested_at": record["requested_at"]}
