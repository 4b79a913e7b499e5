"""When a retrain may start: cooldown, a daily cap, enough new labelled rows, one run at a time.

History is the endpoint's run records (state store kind core.records.RUN), as plain dicts with
`state`, `run_id`, and `submitted_at` (ISO time) once a pipeline run was submitted. Every submitted
run counts towards the cooldown and the daily cap, whatever its outcome (a rejected challenger too),
so a persistent drift cannot make the endpoint retrain over and over.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from core.types import parse_time
from retrain.runs import ACTIVE

# A run in one of these states still owns the endpoint: no second retrain may start beside it.
ACTIVE_STATES = ACTIVE


@dataclass(frozen=True)
class RetrainPolicy:
    cooldown: timedelta = timedelta(days=7)
    max_per_day: int = 1
    min_new_labelled_rows: int = 1000

    def to_json(self) -> dict[str, Any]:
        return {"cooldown_s": self.cooldown.total_seconds(), "max_per_day": self.max_per_day,
                "min_new_labelled_rows": self.min_new_labelled_rows}


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    reasons: list[str] = field(default_factory=list)
    active_run: str | None = None


def active_run(history: Iterable[Mapping[str, Any]], *, exclude: str | None = None) -> str | None:
    for run in history:
        if run["state"] in ACTIVE_STATES and run["run_id"] != exclude:
            return run["run_id"]
    return None


def may_start(history: list[Mapping[str, Any]], now: datetime, policy: RetrainPolicy, *,
              run_id: str | None = None) -> PolicyDecision:
    """Before any data is read: is another run active, is the endpoint cooling down, is today's cap hit?"""
    others = [r for r in history if r["run_id"] != run_id]
    busy = active_run(others)
    if busy:
        return PolicyDecision(False, [f"run {busy} is still active for this endpoint"], busy)
    submitted = sorted(parse_time(r["submitted_at"]) for r in others if r.get("submitted_at"))
    reasons = []
    if submitted and now - submitted[-1] < policy.cooldown:
        reasons.append(f"cooldown: last retrain submitted at {submitted[-1].isoformat()}, "
                       f"less than {policy.cooldown} ago")
    today = [t for t in submitted if now - t < timedelta(days=1)]
    if len(today) >= policy.max_per_day:
        reasons.append(f"daily cap: {len(today)} retrain(s) in the last 24 h, at most {policy.max_per_day}")
    return PolicyDecision(not reasons, reasons)


def enough_rows(new_rows: int, policy: RetrainPolicy) -> PolicyDecision:
    if new_rows < policy.min_new_labelled_rows:
        return PolicyDecision(False, [f"only {new_rows} new labelled rows, at least "
                                      f"{policy.min_new_labelled_rows} needed"])
    return PolicyDecision(True)


def last_data_end(history: Iterable[Mapping[str, Any]]) -> datetime | None:
    """End of the data window of the latest submitted run: rows after it are 'new'."""
    ends = [parse_time(r["window"]["end"]) for r in history if r.get("submitted_at") and r.get("window")]
    return max(ends, default=None)
