"""Late telemetry: a window checked with far fewer rows than its monitor usually sees is checked again.

Rows can arrive after the lateness allowance (an ingestion outage, a backlog): the first check then sees
an empty or thin window and records it so. When a window has fewer than half the rows of the monitor's
recent windows (median of the last 8, once there are 3), the check schedules one re-check of the same
window after the lateness allowance again (or one window length when the spec allows none), and both
records say so: `late_telemetry` on the first, `late_recheck` on the second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import TYPE_CHECKING, Any

from core.events import Envelope
from core.records import CHECK, put
from core.types import Window, iso

if TYPE_CHECKING:
    from core.ports import StateStore
    from monitors.spec import MonitorSpec

LATE_RECHECK = "late-recheck"  # the reason of a re-check request
ROWS = "window_rows"  # state kind: recent row counts per monitor
LATE_FRACTION = 0.5
_KEPT, _NEEDED = 8, 3


@dataclass(frozen=True)
class Late:
    record: dict[str, Any] = field(default_factory=dict)  # fields for the check record
    request: tuple[Envelope, datetime] | None = None  # the re-check request and when it is due
    state: str | None = None  # the window's re-check state: pending | done | None


def late_telemetry(store: "StateStore", spec: "MonitorSpec", window: Window, rows: int, now: datetime, *,
                   recheck: bool) -> Late:
    from core.events import event_id
    from monitors.schedule import check_requested

    if recheck:
        previous = store.get(CHECK, event_id("check", spec.name, window.key()))
        first = previous.data if previous else {}
        return Late({"late_recheck": {"previous_rows": first.get("rows"),
                                      "previous_completed_at": first.get("completed_at")}}, None, "done")
    expected = _remember(store, spec.name, window, rows)
    if expected is None or rows >= LATE_FRACTION * expected:
        return Late()
    at = now + (spec.window.lateness or spec.window.size)
    request = check_requested(spec.name, window, now, reason=LATE_RECHECK, generation="late")
    return Late({"late_telemetry": {"rows": rows, "expected_rows": expected, "recheck_at": iso(at)}},
                (request, at), "pending")


def _remember(store: "StateStore", monitor: str, window: Window, rows: int) -> float | None:
    """Add this window's rows to the monitor's recent ones; returns what was expected before it."""
    doc = store.get(ROWS, monitor)
    recent = [(k, n) for k, n in (doc.data.get("recent", []) if doc else []) if k != window.key()]
    expected = float(median(n for _, n in recent)) if len(recent) >= _NEEDED else None
    put(store, ROWS, monitor, {"recent": sorted([*recent, (window.key(), rows)])[-_KEPT:]})
    return expected
