"""The retrain run: one typed record moving through explicit states, each with a deadline (state kind
core.records.RUN, key = run id). It is the audit trail of one retrain.

    requested -> running -> trained -> accepted -> canary -> promoting -> promoted
        |           |          |           |   \\-> promoted (an endpoint with no model yet)
        |           |          |           |          \\-> rolling_back -> rolled_back | failed (also from
        |           |          |           |               promoting: a promotion refused for good)
        skipped     failed     rejected    rolling_back (a canary half made when its deadline passed)

Every move is `transition`: allowed only along TRANSITIONS, it appends a history entry (at, from, to, by, note),
sets the new state's deadline, and saves the events that announce it in the same write (the outbox);
`relay` publishes them afterwards, and the tracking timer relays what a crash left behind. So no event runs
ahead of the state it describes, and a repeated transition (a redelivery) is refused, not applied twice.
A run that may hold traffic (accepted, canary, promoting) never goes straight to failed: its traffic is rolled
back first (rolling_back).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Iterable, Mapping

from core.events import Envelope, decode, encode
from core.ports import Publisher, StateStore
from core.records import RUN, require
from core.retry import retry_on_conflict
from core.types import iso, parse_time


class Phase(StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    TRAINED = "trained"
    ACCEPTED = "accepted"
    CANARY = "canary"
    PROMOTING = "promoting"
    ROLLING_BACK = "rolling_back"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return not TRANSITIONS.get(self)


P = Phase
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.REQUESTED: frozenset({P.RUNNING, P.SKIPPED, P.FAILED}),
    P.RUNNING: frozenset({P.TRAINED, P.FAILED}),
    P.TRAINED: frozenset({P.ACCEPTED, P.REJECTED, P.FAILED}),
    P.ACCEPTED: frozenset({P.CANARY, P.PROMOTED, P.ROLLING_BACK}),
    P.CANARY: frozenset({P.PROMOTING, P.ROLLING_BACK}),
    P.PROMOTING: frozenset({P.PROMOTED, P.ROLLING_BACK}),
    P.ROLLING_BACK: frozenset({P.ROLLED_BACK, P.FAILED}),
}
TERMINAL = frozenset(p.value for p in Phase if p.terminal)
ACTIVE = frozenset(p.value for p in Phase if not p.terminal)
# Deadlines per state when the configuration gives none (retrain.deps.RetrainConfig.deadlines overrides).
DEADLINES: dict[Phase, timedelta] = {
    P.REQUESTED: timedelta(days=1), P.RUNNING: timedelta(days=2), P.TRAINED: timedelta(hours=6),
    P.ACCEPTED: timedelta(hours=6), P.CANARY: timedelta(days=1), P.PROMOTING: timedelta(hours=6),
    P.ROLLING_BACK: timedelta(hours=6),
}
_FIELDS = ("run_id", "endpoint", "state", "requested_at", "deadline", "reason", "trigger", "idempotency_key",
           "window", "history", "deployment", "outcome", "outbox")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    endpoint: str
    state: Phase
    requested_at: datetime
    reason: str = ""
    trigger: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""
    window: Mapping[str, str] | None = None
    deadline: datetime | None = None
    history: tuple[Mapping[str, Any], ...] = ()
    deployment: tuple[Mapping[str, Any], ...] = ()
    outcome: Mapping[str, Any] | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)  # what each stage recorded: run, metrics, gate...
    outbox: tuple[Mapping[str, Any], ...] = ()  # {"event": encoded envelope}: saved with the state, relayed after
    etag: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The flat document GET /api/runs/{id} shows and the state store keeps."""
        return {**self.evidence, "run_id": self.run_id, "endpoint": self.endpoint, "state": self.state.value,
                "requested_at": iso(self.requested_at), "deadline": iso(self.deadline) if self.deadline else None,
                "reason": self.reason, "trigger": dict(self.trigger), "idempotency_key": self.idempotency_key,
                "window": dict(self.window) if self.window else None, "history": [dict(h) for h in self.history],
                "deployment": [dict(d) for d in self.deployment], "outcome": dict(self.outcome) if self.outcome
                else None, "outbox": [dict(e) for e in self.outbox]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], etag: str | None = None) -> "RunRecord":
        return cls(run_id=doc["run_id"], endpoint=doc["endpoint"], state=Phase(doc["state"]),
                   requested_at=parse_time(doc["requested_at"]), reason=doc.get("reason", ""),
                   trigger=doc.get("trigger") or {}, idempotency_key=doc.get("idempotency_key", ""),
                   window=doc.get("window"), deadline=parse_time(doc["deadline"]) if doc.get("deadline") else None,
                   history=tuple(doc.get("history", ())), deployment=tuple(doc.get("deployment", ())),
                   outcome=doc.get("outcome"), evidence={k: v for k, v in doc.items() if k not in _FIELDS},
                   outbox=tuple(doc.get("outbox", ())), etag=etag)

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)


def run_id_for(endpoint: str, idempotency_key: str) -> str:
    """The same (endpoint, key) always names the same run: repeats find it instead of making another."""
    digest = hashlib.sha256(f"{endpoint}\x1f{idempotency_key}".encode()).hexdigest()
    return f"rt-{digest[:20]}"


def new_record(run_id: str, endpoint: str, reason: str, trigger: Mapping[str, Any], idempotency_key: str,
               window: Mapping[str, str] | None, now: datetime, *, deadline: timedelta | None = None,
               events: Iterable[Envelope] = ()) -> RunRecord:
    return RunRecord(run_id, endpoint, P.REQUESTED, now, reason, dict(trigger), idempotency_key,
                     dict(window) if window else None, now + (deadline or DEADLINES[P.REQUESTED]),
                     history=({"at": iso(now), "state": "requested", "by": _actor(trigger)},),
                     outbox=tuple({"event": encode(e).decode()} for e in events))


def load(store: StateStore, run_id: str) -> RunRecord:
    doc = require(store, RUN, run_id)
    return RunRecord.from_json(doc.data, doc.etag)


def insert(store: StateStore, record: RunRecord) -> RunRecord:
    """Create a run (ConcurrencyConflict if its id exists: a repeated request)."""
    return replace(record, etag=store.insert(RUN, record.run_id, record.to_json()))


def endpoint_runs(store: StateStore, endpoint: str) -> list[dict[str, Any]]:
    """An endpoint's runs as flat documents (what retrain.policy reads)."""
    return [dict(doc.data) for _, doc in store.list(RUN) if doc.data.get("endpoint") == endpoint]


def all_runs(store: StateStore) -> list[RunRecord]:
    return [RunRecord.from_json(doc.data, doc.etag) for _, doc in store.list(RUN)]


def transition(store: StateStore, run_id: str, to: Phase | str, now: datetime, note: str | None = None, *,
               by: str = "service", deadline: timedelta | None = None, events: Iterable[Envelope] = (),
               deployment_step: Mapping[str, Any] | None = None, outcome: Mapping[str, Any] | None = None,
               expect: Iterable[Phase | str] | None = None, **evidence: Any) -> RunRecord | None:
    """Move a run to `to` if its state allows it (and is one of `expect`, when given), recording the history
    entry, the new deadline, evidence, and `events` in the outbox, in one write. None: not allowed from the
    state it is in (another delivery got there first). Optimistic concurrency: re-read and retry on a race."""
    to = Phase(to)
    allowed_from = {Phase(s) for s in expect} if expect is not None else None
    pending = [{"event": encode(e).decode()} for e in events]

    def attempt() -> RunRecord | None:
        record = load(store, run_id)
        if to not in TRANSITIONS.get(record.state, ()) or allowed_from is not None and record.state not in \
                allowed_from:
            return None
        entry = {"at": iso(now), "from": record.state.value, "state": to.value, "by": by,
                 **({"note": note} if note else {})}
        fields = {k: v for k, v in evidence.items() if k == "window"}  # the run's own field, not evidence
        extra = {**record.evidence, **{k: v for k, v in evidence.items() if k not in fields}}
        if to.terminal:
            extra["finished_at"] = iso(now)
        new = replace(record, state=to, history=(*record.history, entry), evidence=extra,
                      deadline=None if to.terminal else now + (deadline or DEADLINES.get(to, timedelta(days=1))),
                      deployment=(*record.deployment, dict(deployment_step)) if deployment_step else
                      record.deployment, outcome=dict(outcome) if outcome is not None else record.outcome,
                      outbox=(*record.outbox, *pending), **fields)
        return replace(new, etag=store.replace(RUN, run_id, new.to_json(), record.etag))

    return retry_on_conflict(attempt, what=f"run {run_id}")


def relay(store: StateStore, publisher: Publisher, run_id: str) -> int:
    """Publish a run's saved events, then drop them from its outbox; returns how many were published.
    Ids are deterministic, so an event published twice (a crash before the drop) is one event on the bus."""
    record = load(store, run_id)
    if not record.outbox:
        return 0
    for item in record.outbox:
        publisher.publish(decode(item["event"]))
    sent = {item["event"] for item in record.outbox}

    def attempt() -> None:
        current = load(store, run_id)
        left = tuple(item for item in current.outbox if item["event"] not in sent)
        if left != current.outbox:
            store.replace(RUN, run_id, replace(current, outbox=left).to_json(), current.etag)

    retry_on_conflict(attempt, what=f"outbox of run {run_id}")
    return len(sent)


def model_json(text: str | None) -> dict[str, str] | None:
    """'name:version' -> {"name", "version"}: how events carry a model."""
    if not text:
        return None
    name, _, version = text.rpartition(":")
    return {"name": name, "version": version}


def summary(record: RunRecord | Mapping[str, Any], *, existing: bool) -> dict[str, Any]:
    doc = record.to_json() if isinstance(record, RunRecord) else record
    return {"run_id": doc["run_id"], "endpoint": doc["endpoint"], "state": doc["state"], "existing": existing,
            "requested_at": doc["requested_at"]}


def _actor(trigger: Mapping[str, Any]) -> str:
    return str(trigger.get("caller") or trigger.get("kind") or "service")
