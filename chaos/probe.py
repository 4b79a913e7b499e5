"""What the stores say right now, read without taking a lock anyone waits on: the moment a kill lands in,
and whether the service has nothing left to do."""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

MOMENTS = ("mid-check", "mid-publish", "mid-retrain", "mid-deploy")
LEASE = timedelta(minutes=60)  # MLOPS_CHECK_LEASE in chaos.world


def _docs(data: Path, kind: str) -> list[dict]:
    path = data / "state.sqlite"
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)) as db:
            rows = db.execute("SELECT data FROM docs WHERE kind = ?", (kind,)).fetchall()
    except sqlite3.Error:
        return []
    return [json.loads(text) for (text,) in rows]


def moments(data: Path, since: datetime | None = None) -> set[str]:
    """Which of MOMENTS the service is in now (several at once is common). A check counts only if the running
    host took it (its lease began at or after `since`, the simulated time the host started): a lease a killed
    host left behind is not a check in progress."""
    found = set()
    windows = _docs(data, "claim")
    runs = _docs(data, "run")
    if any(w.get("state") == "running" and (since is None or _leased_after(w, since)) for w in windows):
        found.add("mid-check")
    if any(w.get("state") == "publishing" for w in windows) or any(r.get("outbox") for r in runs):
        found.add("mid-publish")
    if any(r.get("state") in ("requested", "running") for r in runs):
        found.add("mid-retrain")
    if any(r.get("state") in ("accepted", "promoting", "rolling_back") for r in runs) or _journal_open(data):
        found.add("mid-deploy")
    return found


def _leased_after(window: dict, since: datetime) -> bool:
    from core.types import parse_time

    return bool(window.get("until")) and parse_time(window["until"]) - LEASE >= since


def _journal_open(data: Path) -> bool:
    try:
        state = json.loads((data / "endpoints.json").read_text())
    except (OSError, ValueError):
        return False
    return any(ep.get("pending") for ep in (state.get("endpoints") or {}).values())


def pending_messages(data: Path, now_us: int) -> dict[str, int]:
    """Messages not yet settled: visible now, locked by a receiver, or scheduled for later."""
    path = data / "bus.sqlite"
    if not path.exists():
        return {"active": 0, "locked": 0, "scheduled": 0}
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute(
            "SELECT COALESCE(SUM(available_at <= ?), 0), COALESCE(SUM(locked_until > ?), 0),"
            " COALESCE(SUM(available_at > ? AND (locked_until IS NULL OR locked_until <= ?)), 0)"
            " FROM messages WHERE dead = 0", (now_us, now_us, now_us, now_us)).fetchone()
    return dict(zip(("active", "locked", "scheduled"), row, strict=True))


def active_runs(data: Path) -> int:
    return sum(1 for r in _docs(data, "run") if r.get("state") not in (
        "promoted", "rolled_back", "rejected", "skipped", "failed"))


def runs(data: Path) -> list[dict]:
    return _docs(data, "run")


def windows(data: Path) -> list[dict]:
    return _docs(data, "claim")


def docs(data: Path, kind: str) -> list[dict]:
    return _docs(data, kind)
