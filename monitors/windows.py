"""The record of one (monitor, window): who checks it, how often it failed, and the events it announces.

States: pending -> running -> publishing -> done, or failed once `max_attempts` attempts failed.
- running is a lease held by one delivery (the message id). The same message delivered again takes it over
  at once: its earlier delivery lost its lock, so it crashed or gave up. Another message waits until the
  lease ends (`WorkHeld`): it is never completed while the work it asks for is undone.
- publishing holds the check's events (an outbox) saved in the same write as the state that says the check
  is computed; they are relayed, then the window is done. A crash anywhere leaves a state that the next
  delivery finishes without computing twice, and no event announces a record that is not stored.
- requests carry a generation: a window asked for again after its request died (dead-lettered, lost, or
  the window given up and re-run by an operator) gets a new event id, so duplicate detection cannot
  swallow the re-request.
Kept in the state store under kind core.records.CLAIM, key "<monitor>/<window key>".
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from core.errors import WorkHeld
from core.events import Envelope, decode, encode, event_id
from core.ports import Publisher, StateStore
from core.records import CLAIM
from core.retry import retry_on_conflict
from core.types import Window, iso, parse_time

PENDING, RUNNING, PUBLISHING, DONE, FAILED = "pending", "running", "publishing", "done", "failed"
PASSED = frozenset({DONE, FAILED})  # the watermark may move over these
_ERRORS_KEPT = 5


@dataclass(frozen=True)
class WindowRecord:
    monitor: str
    window: Window
    state: str = PENDING
    generation: int = 0
    requested_at: datetime | None = None
    request_dead: bool = False  # the current generation's message is known to be gone (dead-lettered)
    owner: str | None = None  # the message id holding the lease
    until: datetime | None = None
    attempts: int = 0  # failed attempts that count towards giving up (outages do not)
    errors: tuple[str, ...] = ()
    result: str | None = None  # the check id
    outbox: tuple[Mapping[str, Any], ...] = ()  # {"event": encoded envelope, "at": ISO time or None}
    then: str = DONE  # the state after the outbox is relayed
    recheck: str | None = None  # late telemetry: "pending" until the re-check ran, then "done"
    completions: int = 0  # times a computed check of this window was announced and finished (audit: 1 per run)
    etag: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return record_key(self.monitor, self.window)

    def held_by_other(self, message_id: str, now: datetime) -> bool:
        return (self.state == RUNNING and self.owner != message_id and self.until is not None
                and self.until > now)

    def to_json(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "window": self.window.to_json(), "state": self.state,
                "generation": self.generation, "requested_at": _iso(self.requested_at),
                "request_dead": self.request_dead, "owner": self.owner, "until": _iso(self.until),
                "attempts": self.attempts, "errors": list(self.errors), "result": self.result,
                "outbox": [dict(e) for e in self.outbox], "then": self.then, "recheck": self.recheck,
                "completions": self.completions}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], etag: str | None, monitor: str, window: Window) -> "WindowRecord":
        # Records written before this module (a claim with owner/state/until/result) read as the same states.
        return cls(monitor, window, state=doc.get("state", PENDING), generation=int(doc.get("generation", 0)),
                   requested_at=_time(doc.get("requested_at")), request_dead=bool(doc.get("request_dead")),
                   owner=doc.get("owner"), until=_time(doc.get("until")), attempts=int(doc.get("attempts", 0)),
                   errors=tuple(doc.get("errors", ())), result=doc.get("result"),
                   outbox=tuple(doc.get("outbox", ())), then=doc.get("then", DONE), recheck=doc.get("recheck"),
                   completions=int(doc.get("completions", 0)), etag=etag)


def record_key(monitor: str, window: Window) -> str:
    return f"{monitor}/{window.key()}"


def request_id(monitor: str, window: Window, generation: int | str = 0) -> str:
    """The check.requested event id: generation 0 is the id every timer tick and HTTP request shares."""
    if generation == 0:
        return event_id("check.requested", monitor, window.key())
    return event_id("check.requested", monitor, window.key(), generation)


def load(store: StateStore, monitor: str, window: Window) -> WindowRecord:
    doc = store.get(CLAIM, record_key(monitor, window))
    return WindowRecord(monitor, window) if doc is None else WindowRecord.from_json(doc.data, doc.etag, monitor,
                                                                                    window)


def passed(store: StateStore, monitor: str, window: Window) -> bool:
    return load(store, monitor, window).state in PASSED


def update(store: StateStore, monitor: str, window: Window,
           change: Callable[[WindowRecord], WindowRecord | None]) -> WindowRecord:
    """Read, apply `change` (None: leave it), write with the etag; a lost race re-reads and decides again."""

    def attempt() -> WindowRecord:
        current = load(store, monitor, window)
        new = change(current)
        if new is None:
            return current
        data = new.to_json()
        etag = store.insert(CLAIM, new.key, data) if current.etag is None else store.replace(
            CLAIM, new.key, data, current.etag)
        return replace(new, etag=etag)

    return retry_on_conflict(attempt, what=f"window {record_key(monitor, window)}")


def next_request(store: StateStore, monitor: str, window: Window, now: datetime, *, ttl: timedelta,
                 operator: bool = False, force: bool = False) -> WindowRecord | None:
    """Which generation to request now, recorded before it is published; None: nothing to request.

    The timer asks for pending windows only. An operator (HTTP, `monitors retry`) also re-runs a failed
    window, and with `force` a done one. A request still in flight is asked for again under the same id
    (the bus drops the repeat) by an operator and left alone by the timer; one that died, failed before, or
    is older than `ttl` gets a new generation.
    """
    asked: list[WindowRecord] = []

    def change(rec: WindowRecord) -> WindowRecord | None:
        asked.clear()
        if rec.state in (RUNNING, PUBLISHING) and rec.until is not None and rec.until > now:
            return None  # being checked right now
        if rec.state == DONE and not force or rec.state == FAILED and not (operator or force):
            return None
        if rec.state in PASSED or rec.state == PUBLISHING and force:
            new = replace(rec, state=PENDING, generation=rec.generation + 1, requested_at=now, request_dead=False,
                          attempts=0, owner=None, until=None, recheck=None, result=None)
        elif rec.requested_at is None:
            new = replace(rec, requested_at=now)
        elif rec.request_dead or now - rec.requested_at >= ttl or operator and rec.errors:
            new = replace(rec, generation=rec.generation + 1, requested_at=now, request_dead=False)
        else:  # in flight: the timer leaves it; an operator's request goes out under the same id (deduplicated)
            if operator:
                asked.append(rec)
            return None
        asked.append(new)
        return new

    update(store, monitor, window, change)
    return asked[0] if asked else None


def claim(store: StateStore, window_of: tuple[str, Window], message_id: str, now: datetime, lease: timedelta, *,
          recheck: bool = False) -> WindowRecord | None:
    """Take the window for this delivery. Returns the record (running: compute it; publishing: relay its
    outbox) or None when there is nothing to do (done, failed). Raises WorkHeld while another message's
    lease is live."""
    monitor, window = window_of

    def change(rec: WindowRecord) -> WindowRecord | None:
        if rec.state == DONE and recheck and rec.recheck == "pending":
            return replace(rec, state=RUNNING, owner=message_id, until=now + lease)
        if rec.state in PASSED or rec.state == PUBLISHING:
            return None
        if rec.held_by_other(message_id, now):
            raise WorkHeld(f"window {rec.key} is being checked by message {rec.owner} until {iso(rec.until)}",
                           retry_at=rec.until)
        return replace(rec, state=RUNNING, owner=message_id, until=now + lease)

    rec = update(store, monitor, window, change)
    if rec.state == RUNNING and rec.owner == message_id or rec.state == PUBLISHING:
        return rec
    return None


def stage(store: StateStore, rec: WindowRecord, check_id: str, events: list[tuple[Envelope, datetime | None]], *,
          then: str = DONE, recheck: str | None = None, error: str | None = None) -> WindowRecord:
    """running -> publishing: the check's events saved with the state that says it is computed (or, with
    then=FAILED and the `error`, that it was given up)."""

    def change(current: WindowRecord) -> WindowRecord | None:
        if current.state != RUNNING or current.owner != rec.owner:
            raise WorkHeld(f"window {rec.key} was taken over while this delivery computed it", retry_at=None)
        outbox = tuple({"event": encode(e).decode(), "at": _iso(at)} for e, at in events)
        failed = {"attempts": current.attempts + 1, "errors": (*current.errors, error[:500])[-_ERRORS_KEPT:]} \
            if error is not None else {}
        return replace(current, state=PUBLISHING, result=check_id, outbox=outbox, then=then,
                       recheck=recheck if recheck is not None else current.recheck, until=None, **failed)

    return update(store, rec.monitor, rec.window, change)


def relay(store: StateStore, publisher: Publisher, rec: WindowRecord) -> WindowRecord:
    """Publish the outbox (ids are deterministic: a repeat is dropped by the bus), then move on to `then`."""
    for item in rec.outbox:
        at = item.get("at")
        publisher.publish(decode(item["event"]), scheduled_at=parse_time(at) if at else None)

    def change(current: WindowRecord) -> WindowRecord | None:
        if current.state != PUBLISHING:
            return None
        return replace(current, state=current.then, outbox=(), owner=None, until=None,
                       completions=current.completions + 1)

    return update(store, rec.monitor, rec.window, change)


def fail(store: StateStore, rec: WindowRecord, error: str, *, counts: bool, dead: bool,
         max_attempts: int) -> WindowRecord:
    """Record a failed attempt and release the lease; `counts`: towards giving up (not an outage);
    `dead`: the message will not come back (dead-lettered), so the next request needs a new id."""

    def change(current: WindowRecord) -> WindowRecord | None:
        mine = current.state == RUNNING and current.owner == rec.owner
        attempts = current.attempts + (1 if counts else 0)
        errors = (*current.errors, error[:500])[-_ERRORS_KEPT:]
        state = current.state
        if mine:
            state = PENDING if current.recheck != "pending" or current.result is None else DONE
        return replace(current, state=state, attempts=attempts, errors=errors,
                       request_dead=current.request_dead or dead, owner=None if mine else current.owner,
                       until=None if mine else current.until)

    return update(store, rec.monitor, rec.window, change)


def release(store: StateStore, rec: WindowRecord) -> None:
    """Drop our lease without counting anything (the process is stopping): a retry may start at once."""

    def change(current: WindowRecord) -> WindowRecord | None:
        if current.state != RUNNING or current.owner != rec.owner:
            return None
        return replace(current, state=PENDING if current.result is None else DONE, owner=None, until=None)

    update(store, rec.monitor, rec.window, change)


def _iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def _time(text: str | None) -> datetime | None:
    return parse_time(text) if text else None
