"""Windows and watermarks: which checks are due, and how far each monitor has got.

Each monitor has a grid of windows [origin + k*size, origin + (k+1)*size). A window is due once its end plus
the lateness allowance has passed. The timer asks for due windows past the watermark that are not done, oldest
first and at most `limit` per monitor per tick (a long backlog is caught up over several ticks, and reported),
with a deterministic event id per request generation (monitors.windows); the watermark moves only over the
contiguous run of windows that are done or given up. So an outage of any length delays checks but never skips
one, and repeats (overlapping timers, two instances, redeliveries) are absorbed by the bus's duplicate
detection and by the window's lease, which the check handler takes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from core.events import Envelope, new_event
from core.ports import Publisher, StateStore
from core.records import advance_watermark, get_watermark
from core.types import Window, iso, utc
from monitors import windows

log = logging.getLogger("mlops.schedule")
CHECK_REQUESTED = "mlops.check.requested.v1"
MAX_WINDOWS_PER_TICK = 24  # default catch-up bound per monitor per tick (MLOPS_MAX_WINDOWS_PER_TICK)
REQUEST_TTL = timedelta(minutes=15)  # an unanswered request is sent again under a new id (MLOPS_CHECK_REQUEST_TTL)


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


@dataclass(frozen=True)
class TickReport:
    """What one timer tick asked for, and how far behind each monitor still is."""

    requested: list[Envelope]
    behind: dict[str, int]  # monitor -> due windows left for later ticks (catch-up bound)

    def __len__(self) -> int:
        return len(self.requested)

    def __iter__(self):
        return iter(self.requested)


def schedule_checks(monitors: Sequence[MonitorSchedule], store: StateStore, publisher: Publisher,
                    now: datetime, *, limit: int = MAX_WINDOWS_PER_TICK,
                    request_ttl: timedelta = REQUEST_TTL) -> TickReport:
    """The timer's handler: publish mlops.check.requested.v1 for due windows not yet done, oldest first.

    A monitor seen for the first time starts at its latest due window (history is for `backfill`). A window
    being checked is left to its check; one whose request is still in flight is asked for under the same id
    (the bus drops the repeat); at most `limit` windows per monitor are asked for, the rest wait for later
    ticks and are counted in the report.
    """
    published: list[Envelope] = []
    behind: dict[str, int] = {}
    for schedule in monitors:
        watermark = get_watermark(store, schedule.monitor) or _first_watermark(store, schedule, now)
        if watermark is None:
            continue  # nothing due yet
        due = due_windows(watermark, now, size=schedule.window, lateness=schedule.lateness,
                          origin=schedule.origin, limit=100_000)
        asked = 0
        for i, window in enumerate(due):
            if asked >= limit:
                behind[schedule.monitor] = len(due) - i  # not looked at this tick (some may be done already)
                log.warning("monitor %s: %d check(s) asked for, up to %d due window(s) left for later ticks",
                            schedule.monitor, asked, len(due) - i)
                break
            record = windows.next_request(store, schedule.monitor, window, now, ttl=request_ttl)
            if record is None:
                continue  # done, given up, being checked, or its request is still in flight
            envelope = check_requested(schedule.monitor, window, now, reason="schedule",
                                       generation=record.generation)
            publisher.publish(envelope)
            published.append(envelope)
            asked += 1
    return TickReport(published, behind)


def check_requested(monitor: str, window: Window, now: datetime, *, reason: str, generation: int | str = 0) -> Envelope:
    """The same id as monitors.check.request_check for the same generation, so a timer and an HTTP request
    for one window dedupe."""
    return new_event(CHECK_REQUESTED, {"monitor": monitor, "window_start": iso(window.start),
                                       "window_end": iso(window.end), "reason": reason,
                                       "generation": generation},
                     id=windows.request_id(monitor, window, generation), subject=monitor, time=now)


def _first_watermark(store: StateStore, schedule: MonitorSchedule, now: datetime) -> datetime | None:
    open_window = window_at(utc(now) - schedule.lateness, size=schedule.window, origin=schedule.origin)
    first = open_window.start - schedule.window  # the latest window whose end + lateness has passed
    if first < utc(schedule.origin):
        return None
    return advance_watermark(store, schedule.monitor, first)


def complete_window(store: StateStore, monitor: str, window: Window, *, origin: datetime,
                    size: timedelta) -> datetime | None:
    """After a window is done (or given up): move the watermark over the contiguous run of such windows.

    Returns the watermark. A window that completes ahead of a missing one is remembered but jumped over later.
    A monitor without a watermark yet (an HTTP check of an old window before its first tick) gets none here:
    the watermark is the timer's, and never moves backwards.
    """
    watermark = get_watermark(store, monitor)
    if watermark is None:
        return None
    cursor = grid_ceil(watermark, size=size, origin=origin)
    while windows.passed(store, monitor, Window(cursor, cursor + size)):
        cursor += size
    if cursor <= watermark:
        return watermark
    return advance_watermark(store, monitor, cursor)
