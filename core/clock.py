"""Time as a dependency, so the demo and tests can run schedules on simulated time."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.types import utc


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Simulated time that moves only when told to; thread-safe and never goes backwards."""

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> datetime:
        moment = utc(moment)
        with self._lock:
            if moment < self._now:
                raise ValueError(f"a clock cannot go backwards: {moment} < {self._now}")
            self._now = moment
            return self._now


class ScaledClock:
    """Simulated time that runs `speed` times faster than the wall clock from `start`.

    `since`: the wall-clock moment simulated time was `start` (default: now). Given, a restarted process
    continues the same simulated timeline, its downtime included, instead of starting it over."""

    def __init__(self, start: datetime, speed: float, wall: Clock | None = None, since: datetime | None = None) -> None:
        self._wall = wall or SystemClock()
        self._origin_wall = utc(since) if since is not None else self._wall.now()
        self._origin = utc(start)
        self._speed = speed

    def now(self) -> datetime:
        elapsed = (self._wall.now() - self._origin_wall).total_seconds()
        return self._origin + timedelta(seconds=elapsed * self._speed)


class FileClock:
    """Simulated time read from a file another process writes (an ISO time, replaced atomically): a driver
    outside the host (`make chaos`) moves time, pauses it, or jumps it, across restarts of the host.
    Never goes backwards; re-reads the file only when it changed."""

    def __init__(self, path: str) -> None:
        import os

        self._path, self._stat = path, os.stat
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._now = self._read()

    def now(self) -> datetime:
        info = self._stat(self._path)
        with self._lock:
            if (info.st_mtime_ns, info.st_size) != self._seen:
                self._now = max(self._now, self._read())
            return self._now

    def _read(self) -> datetime:
        import os

        from core.types import parse_time

        info = os.stat(self._path)
        with open(self._path, encoding="utf-8") as source:
            moment = parse_time(source.read().strip())
        self._seen = (info.st_mtime_ns, info.st_size)
        return moment


def parse_clock(text: str) -> Clock:
    """'real' | 'sim:START[@SPEED[@SINCE]]' (simulated time from START, SPEED times faster; SINCE: the wall-clock
    time at which it was START, so restarts keep one timeline) | 'manual:START' | 'file:PATH' (FileClock).

    The one clock syntax for MLOPS_CLOCK and `devhost --clock`; ConfigurationError names what was wrong.
    """
    from core.errors import ConfigurationError
    from core.types import parse_time

    text = (text or "").strip()
    if text == "real":
        return SystemClock()
    if text.startswith("file:"):
        try:
            return FileClock(text.removeprefix("file:"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"clock {text!r}: cannot read the time from that file: {exc}") from exc
    kind, _, rest = text.partition(":")
    start, _, speed = rest.partition("@")
    speed, _, since = speed.partition("@")
    if kind not in ("sim", "manual") or not start or (kind == "manual" and speed):
        raise ConfigurationError(f"clock {text!r}: expected real, sim:2013-04-01T00:00:00Z[@SPEED] or "
                                 "manual:2013-04-01T00:00:00Z")
    try:
        moment = parse_time(start)
        if kind == "manual":
            return ManualClock(moment)
        rate = float(speed or 1.0)
        if not 0 < rate < 1e9:
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        return ScaledClock(moment, rate, since=parse_time(since) if since else None)
    except ValueError as exc:
        raise ConfigurationError(f"clock {text!r}: {exc}") from exc
