"""`python -m monitors backfill --spec SPEC --from T0 --to T1`: the schedule replayed over a past range.

Every window of the spec's grid inside [T0, T1] is checked in order, on a simulated clock set to the moment
the timer would have fired for it (window end + lateness), so alert policies (consecutive windows, cooldowns)
behave as they would have: a backtest of the policy. State lives in its own folder (`--data-dir`), never in
the service's, so a backtest cannot open or resolve real incidents; running it again skips windows done.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from core.errors import MlopsError, ValidationFailed
from core.types import Window, parse_time, utc
from monitors.schedule import MonitorSchedule, due_windows, grid_ceil


def windows_between(schedule: MonitorSchedule, t0: datetime, t1: datetime) -> list[Window]:
    """The grid windows lying wholly inside [t0, t1], oldest first."""
    if utc(t1) <= utc(t0):
        raise ValidationFailed(f"--to {t1} must be after --from {t0}", field="to")
    start = grid_ceil(t0, size=schedule.window, origin=schedule.origin)
    return due_windows(start, utc(t1), size=schedule.window, lateness=timedelta(0), origin=schedule.origin,
                       limit=100_000)


def backfill(spec_path: str | Path, t0: datetime, t1: datetime,
             run_window: Callable[[Window], dict]) -> list[dict]:
    """Run `run_window` on every window of the spec between t0 and t1, in order; returns their results."""
    from monitors.spec import load_spec

    schedule = MonitorSchedule.of(load_spec(spec_path))
    return [run_window(window) for window in windows_between(schedule, t0, t1)]


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m monitors backfill", description=__doc__.splitlines()[0])
    cli.add_argument("--spec", required=True, help="monitor spec YAML")
    cli.add_argument("--from", dest="t0", required=True, help="start, ISO 8601 UTC (e.g. 2013-03-01T00:00:00Z)")
    cli.add_argument("--to", dest="t1", required=True, help="end, ISO 8601 UTC")
    cli.add_argument("--data-dir", default=".local/backfill", help="state, reports and profiles of the backtest")
    return cli


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        t0, t1 = _time(args.t0, "from"), _time(args.t1, "to")
        run_window = real_check(Path(args.spec), Path(args.data_dir))
        results = backfill(args.spec, t0, t1, run_window)
    except ImportError as exc:
        print(f"backfill needs the check handler (monitors.check), which cannot be imported: {exc}", file=sys.stderr)
        return 2
    except MlopsError as exc:
        print(f"backfill failed: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(json.dumps(result, sort_keys=True))
    breached = sum(1 for r in results if r.get("status") == "breached")
    print(json.dumps({"windows": len(results), "breached": breached,
                      "incidents": sorted({i for r in results for i in r.get("incidents", [])})}), file=sys.stderr)
    return 0


def _time(text: str, field: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ValidationFailed(f"--{field} {text!r} is not an ISO 8601 UTC time", field=field) from exc


def real_check(spec_path: Path, data_dir: Path) -> Callable[[Window], dict]:
    """The check handler wired to a private state folder and the configured telemetry source."""
    from core.clock import ManualClock
    from core.reports import FileReportStore
    from core.state_sqlite import SqliteStateStore
    from monitors.check import CheckDeps, run_check  # ImportError here is reported by main()
    from monitors.drift.profile import ProfileCache
    from monitors.schedule import check_requested
    from monitors.spec import SpecRepository, load_spec

    spec = load_spec(spec_path)
    schedule = MonitorSchedule.of(spec)
    clock = ManualClock(schedule.origin)
    events: list[Any] = []
    deps = CheckDeps(store=SqliteStateStore(data_dir / "state.sqlite"), publisher=_Collect(events),
                     telemetry=_telemetry(), specs=SpecRepository(spec_path.parent),
                     profiles=ProfileCache(data_dir / "profiles"), reports=FileReportStore(data_dir / "reports"),
                     clock=clock, base_dir=spec_path.parent, instance="backfill")

    def run_window(window: Window) -> dict:
        fire = window.end + schedule.lateness
        if fire > clock.now():
            clock.set(fire)
        doc = run_check(check_requested(spec.name, window, clock.now(), reason="backfill"), deps)
        if doc is None:  # done by an earlier backfill into the same folder
            from core.events import event_id
            from core.records import CHECK, require

            doc = dict(require(deps.store, CHECK, event_id("check", spec.name, window.key())).data)
        return {"window": window.to_json(), "status": doc.get("status"), "rows": doc.get("rows"),
                "rejected": doc.get("rejected"), "breached_signals": doc.get("breached_signals"),
                "incidents": [i["incident_id"] for i in doc.get("incidents") or []], "report": doc.get("report")}

    return run_window


class _Collect:
    """The backtest's bus: events are kept, never sent, so nobody is notified of the past."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def publish(self, envelope: Any, *, scheduled_at: datetime | None = None) -> None:
        self.events.append(envelope)


def _telemetry() -> Any:
    from core.settings import Settings

    settings = Settings()
    if settings.log_analytics_workspace_id:
        from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource

        return LogAnalyticsTelemetrySource(settings.log_analytics_workspace_id)
    from core.telemetry_store import SqliteTelemetryStore
    from monitors.telemetry.local import LocalTelemetrySource

    return LocalTelemetrySource(SqliteTelemetryStore(Path(settings.data_dir) / "telemetry.sqlite"))
