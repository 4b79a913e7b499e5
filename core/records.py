"""Typed helpers over the StateStore port: inbox, watermarks, and plain records (window leases: monitors.windows).

Kinds are fixed strings so every adapter lays data out the same way (Table Storage: PartitionKey).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from core.errors import ConcurrencyConflict, NotFound
from core.events import Envelope
from core.ports import Doc, StateStore
from core.retry import retry_on_conflict
from core.types import iso, parse_time

INBOX, WATERMARK, CLAIM, CHECK, INCIDENT, RUN = "inbox", "watermark", "claim", "check", "incident", "run"
AUDIT = "audit"


def already_processed(store: StateStore, consumer: str, message_id: str) -> bool:
    return store.get(INBOX, f"{consumer}/{message_id}") is not None


def mark_processed(store: StateStore, consumer: str, message_id: str, at: datetime) -> bool:
    """Record that `consumer` finished `message_id`; False if it already had (a duplicate)."""
    try:
        store.insert(INBOX, f"{consumer}/{message_id}", {"at": iso(at)})
    except ConcurrencyConflict:
        return False
    return True


def get_watermark(store: StateStore, monitor: str) -> datetime | None:
    doc = store.get(WATERMARK, monitor)
    return parse_time(doc.data["watermark"]) if doc else None


def advance_watermark(store: StateStore, monitor: str, to: datetime) -> datetime:
    """Move the watermark forward to `to` (never backwards); retries on a lost race."""

    def attempt() -> datetime:
        doc = store.get(WATERMARK, monitor)
        if doc is None:
            store.insert(WATERMARK, monitor, {"watermark": iso(to)})
            return to
        current = parse_time(doc.data["watermark"])
        if current >= to:
            return current
        store.replace(WATERMARK, monitor, {"watermark": iso(to)}, doc.etag)
        return to

    return retry_on_conflict(attempt, what=f"watermark of {monitor}")


def record_event(store: StateStore, envelope: Envelope) -> str:
    """The audit trail: one record per event, keyed by its time then id so a listing reads in order; a
    redelivery writes the same record again. Events carry aggregates and ids, never raw rows."""
    key = f"{envelope.time}/{envelope.id}"
    put(store, AUDIT, key, {"id": envelope.id, "type": envelope.type, "subject": envelope.subject,
                            "time": envelope.time, "source": envelope.source, "correlationid": envelope.correlationid,
                            "causationid": envelope.causationid, "data": dict(envelope.data),
                            "extensions": dict(envelope.extensions)})
    return key


def audited_events(store: StateStore, prefix: str = "") -> list[Envelope]:
    """The audit trail as events, oldest first (by event time, then id); `prefix` of the event time (e.g. a day,
    "2013-04-10") reads only those."""
    return [Envelope(id=d.data["id"], type=d.data["type"], source=d.data["source"], subject=d.data["subject"],
                     time=d.data["time"], data=d.data["data"], correlationid=d.data.get("correlationid"),
                     causationid=d.data.get("causationid"), extensions=d.data.get("extensions") or {})
            for _, d in store.list(AUDIT, prefix)]


def put(store: StateStore, kind: str, key: str, data: Mapping[str, Any]) -> str:
    """Insert or overwrite a record whose writer is the only writer (last write wins)."""
    doc = store.get(kind, key)
    if doc is None:
        try:
            return store.insert(kind, key, data)
        except ConcurrencyConflict:
            doc = store.get(kind, key)
            assert doc is not None
    return store.replace(kind, key, data, doc.etag)


def require(store: StateStore, kind: str, key: str) -> Doc:
    doc = store.get(kind, key)
    if doc is None:
        raise NotFound(f"no {kind} {key!r}")
    return doc
