"""Windows and watermarks: which checks are due, and how far each monitor has got.

Each monitor has a grid of windows [origin + k*size, origin + (k+1)*size). A window is due once its end plus
the lateness allowance has passed. The timer asks for every due window past the watermark that is not done,
on every tick, with a deterministic event id; the watermark moves only when checks complete, and only over
the contiguous run of done windows. So an outage of any length delays checks but never skips one, and
repeats (overlapping timers, two instances, redeliveries) are absorbed by the bus's duplicate detection and
by the (monitor, window) claim the check handler takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from core.events import Envelope, event_id, new_event
from core.ports import Publisher, StateStore
from core.records import CLAIM, advance_watermark, get_watermark, window_done
from core.retry import retry_on_conflict
from core.types import Window, iso, parse_time, utc

CHECK_REQUESTED = "mlops.check.requested.v1"
MAX_WINDOWS_PER_TICK = 500  # a long backlog is published over several ticks, oldest first


@dataclass(frozen=True)
class MonitorSchedule:
    monitor: str
    endpoint: str
    window: timedelta
    lateness: timedelta
    origin: datetime

    @classmethod
    def of(cls, spec) -> "MonitorSchedule":
        """From a monitors.spec.MonitorSpec (duck-typed: schedule does not depend on the spec model)."""
        return cls(spec.name, spec.endpoint.name, spec.window.size, spec.window.lateness, spec.window.origin)


def window_at(moment: datetime, *, size: timedelta, origin: datetime) -> Window:
    """The grid window containing `moment`."""
    steps = (utc(moment) - utc(origin)) // size
    start = utc(origin) + steps * size
    return Window(start, start + size)


def grid_ceil(moment: datetime, *, size: timedelta, origin: datetime) -> datetime:
    """The first window boundary at or after `moment` (a watermark is normally on one already)."""
    window = window_at(moment, size=size, origin=origin)
    return window.start if window.start == utc(moment) else window.end


def due_windows(watermark: datetime | None, now: datetime, *, size: timedelta, lateness: timedelta,
                origin: datetime, limit: int = MAX_WINDOWS_PER_TICK) -> list[Window]:
    """Aligned windows from the watermark (or origin) whose end + lateness <= now, oldest first."""
    if size <= timedelta(0):
        raise ValueError("window size must be positive")
    start = grid_ceil(watermark, size=size, origin=origin) if watermark else utc(origin)
    windows: list[Window] = []
    while start + size + lateness <= utc(now) and len(windows) < limit:
        windows.append(Window(start, start + size))
        start += size
    return windows


def schedule_checks(monitors: Sequence[MonitorSchedule], store: StateStore, publisher: Publisher,
                    now: datetime) -> list[Envelope]:
    """The timer's handler: publish mlops.check.requested.v1 for every due window not yet done, in order.

    A monitor seen for the first time starts at its latest due window (history is for `backfill`);
    a window whose check holds a live claim is left to that check.
    """
    published: list[Envelope] = []
    for schedule in monitors:
        watermark = get_watermark(store, schedule.monitor) or _first_watermark(store, schedule, now)
        if watermark is None:
            continue  # nothing due yet
        for window in due_windows(watermark, now, size=schedule.window, lateness=schedule.lateness,
                                  origin=schedule.origin):
            if window_done(store, schedule.monitor, window) or _held(store, schedule.monitor, window, now):
                continue
            envelope = check_requested(schedule.monitor, window, now, reason="schedule")
            publisher.publish(envelope)
            published.append(envelope)
    return published


def check_requested(monitor: str, window: Window, now: datetime, *, reason: str) -> Envelope:
    """The same id as monitors.check.request_check, so a timer and an HTTP request for one window dedupe."""
    return new_event(CHECK_REQUESTED, {"monitor": monitor, "window_start": iso(window.start),
                                       "window_end": iso(window.end), "reason": reason},
                     id=event_id("check.requested", monitor, window.key()), subject=monitor, time=now)


def _first_watermark(store: StateStore, schedule: MonitorSchedule, now: datetime) -> datetime | None:
    open_window = window_at(utc(now) - schedule.lateness, size=schedule.window, origin=schedule.origin)
    first = open_window.start - schedule.window  # the latest window whose end + lateness has passed
    if first < utc(schedule.origin):
        return None
    return advance_watermark(store, schedule.monitor, first)


def _held(store: StateStore, monitor: str, window: Window, now: datetime) -> bool:
    doc = store.get(CLAIM, f"{monitor}/{window.key()}")
    return doc is not None and doc.data.get("state") == "running" and parse_time(doc.data["until"]) > now


def complete_window(store: StateStore, monitor: str, window: Window, check_id: str, *, origin: datetime,
                    size: timedelta) -> datetime:
    """Mark (monitor, window) done, then move the watermark over the contiguous run of done windows only.

    Returns the watermark. A window that completes ahead of a missing one is remembered but jumped over later.
    """
    _mark_done(store, monitor, window, check_id)
    watermark = get_watermark(store, monitor)
    cursor = grid_ceil(watermark, size=size, origin=origin) if watermark else window.start
    while window_done(store, monitor, Window(cursor, cursor + size)):
        cursor += size
    if watermark is not None and cursor <= watermark:
        return watermark
    return advance_watermark(store, monitor, cursor)


def _mark_done(store: StateStore, monitor: str, window: Window, check_id: str) -> None:
    """core.records.finish_claim without knowing the owner: whoever held the claim, the window is now done."""
    key = f"{monitor}/{window.key()}"

    def attempt() -> None:
        doc = store.get(CLAIM, key)
        done = {"owner": (doc.data.get("owner") if doc else None) or "schedule", "state": "done",
                "result": check_id}
        if doc is None:
            store.insert(CLAIM, key, done)
        elif doc.data.get("state") != "done":
            store.replace(CLAIM, key, done, doc.etag)

    retry_on_conflict(attempt, what=f"claim {key}")
