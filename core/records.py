"""Typed helpers over the StateStore port: inbox, watermarks, window claims, and plain records.

Kinds are fixed strings so every adapter lays data out the same way (Table Storage: PartitionKey).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

from core.errors import ConcurrencyConflict, NotFound
from core.ports import Doc, StateStore
from core.retry import retry_on_conflict
from core.types import Window, iso, parse_time

INBOX, WATERMARK, CLAIM, CHECK, INCIDENT, RUN = "inbox", "watermark", "claim", "check", "incident", "run"


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


def claim_window(store: StateStore, monitor: str, window: Window, owner: str, now: datetime,
                 lease: timedelta = timedelta(minutes=10)) -> bool:
    """Claim (monitor, window) for one check. False if it is done or another owner's lease is live."""
    key = f"{monitor}/{window.key()}"
    claim = {"owner": owner, "state": "running", "until": iso(now + lease)}
    try:
        store.insert(CLAIM, key, claim)
        return True
    except ConcurrencyConflict:
        pass
    doc = store.get(CLAIM, key)
    if doc is None:
        return False  # deleted between our calls: let the redelivery try again
    if doc.data["state"] == "done":
        return False
    if doc.data["owner"] != owner and parse_time(doc.data["until"]) > now:
        return False
    try:
        store.replace(CLAIM, key, claim, doc.etag)
        return True
    except ConcurrencyConflict:
        return False


def finish_claim(store: StateStore, monitor: str, window: Window, owner: str, result_id: str) -> None:
    key = f"{monitor}/{window.key()}"
    doc = store.get(CLAIM, key)
    if doc is None:
        raise NotFound(f"no claim for {key}")
    store.replace(CLAIM, key, {"owner": owner, "state": "done", "result": result_id}, doc.etag)


def window_done(store: StateStore, monitor: str, window: Window) -> bool:
    doc = store.get(CLAIM, f"{monitor}/{window.key()}")
    return doc is not None and doc.data["state"] == "done"


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
