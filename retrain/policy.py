"""When a retrain may start: performance at risk, cooldown, a daily cap, enough new labelled rows, one run at a time.

Drift alone warns; it does not retrain. A drift event starts a retrain only when the window's performance
is at risk: realized (labels arrived) or estimated without labels (calibrated scores), it is below the
model's reference performance by more than `min_performance_drop` beyond the window's own noise.
With `max_model_age` set, drift may also retrain a stale champion, one whose training data ended longer ago
than that, though its performance holds: a model that never saw the traffic it now serves may be beaten by
one that did, and only training a challenger shows it; the gate then decides on the same recent labels.

History is the endpoint's run records (state store kind core.records.RUN), as plain dicts with
`state`, `run_id`, and `submitted_at` (ISO time) once a pipeline run was submitted. Every submitted
run counts towards the cooldown and the daily cap, whatever its outcome (a rejected challenger too),
so a persistent drift cannot make the endpoint retrain over and over.

A challenger that did not replace the champion (rejected by the gate, or rolled back from its canary) is
evidence that a retrain now does not pay: the data cannot beat the champion yet, or what it trains cannot be
served healthily (a starved or failing canary). The next drift-triggered retrain of the endpoint waits
`rejection_backoff` times longer per such challenger in a row since the last promotion (2, with the default 7-day
cooldown: 7, 14, 28, then at most 56 days; three steps, so a performance still at risk is tried again at least
every eight cooldowns), back to the plain cooldown once one is promoted. Such a retrain never changed the served
model, so waiting costs only the chance of a better challenger sooner. A retrain a person requests is never held
by the back-off (only by the plain cooldown and cap); its outcome counts like any other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from core.types import parse_time
from retrain.runs import ACTIVE, P

# A run in one of these states still owns the endpoint: no second retrain may start beside it.
ACTIVE_STATES = ACTIVE
# The back-off grows for at most this many challengers in a row: old rejections say less about today's data.
MAX_BACKOFF_STEPS = 3


@dataclass(frozen=True)
class RetrainPolicy:
    cooldown: timedelta = timedelta(days=7)
    max_per_day: int = 1
    min_new_labelled_rows: int = 1000
    require_performance_at_risk: bool = True  # False: any drift incident may retrain (within the limits)
    min_performance_drop: float = 0.02  # in the metric's own units (e.g. 0.02 AUC), beyond the window's noise
    # the window's noise: this many of its standard errors (one-sided, ~2.3% by chance). Looser than a page
    # (the monitor alerts at alpha 0.001): a retrain is still gated by the challenger's own evaluation.
    noise_z: float = 2.0
    max_model_age: timedelta | None = None  # None: off; else drift retrains a champion trained on older data
    rejection_backoff: float = 2.0  # drift's cooldown x this per challenger in a row not promoted; 1: off

    def to_json(self) -> dict[str, Any]:
        return {"cooldown_s": self.cooldown.total_seconds(), "max_per_day": self.max_per_day,
                "min_new_labelled_rows": self.min_new_labelled_rows,
                "require_performance_at_risk": self.require_performance_at_risk,
                "min_performance_drop": self.min_performance_drop, "noise_z": self.noise_z,
                "max_model_age_s": self.max_model_age.total_seconds() if self.max_model_age else None,
                "rejection_backoff": self.rejection_backoff}

    def __post_init__(self) -> None:
        if self.rejection_backoff < 1:
            raise ValueError(f"rejection_backoff {self.rejection_backoff}: must be at least 1 (1: off)")


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
              run_id: str | None = None, drift: bool = False) -> PolicyDecision:
    """Before any data is read: is another run active, is the endpoint cooling down, is today's cap hit?
    `drift`: the retrain is triggered by drift, so the cooldown backs off after challengers not promoted."""
    others = [r for r in history if r["run_id"] != run_id]
    busy = active_run(others)
    if busy:
        return PolicyDecision(False, [f"run {busy} is still active for this endpoint"], busy)
    submitted = sorted(parse_time(r["submitted_at"]) for r in others if r.get("submitted_at"))
    reasons = []
    rejected = rejections_since_promotion(others) if drift else 0
    steps = min(rejected, MAX_BACKOFF_STEPS)
    cooldown = policy.cooldown * policy.rejection_backoff ** steps
    if submitted and now - submitted[-1] < cooldown:
        why = (f" ({policy.cooldown} x {policy.rejection_backoff:g}^{steps}: {rejected} challenger(s) rejected or "
               f"rolled back since the last promotion)" if cooldown != policy.cooldown else "")
        reasons.append(f"cooldown: last retrain submitted at {submitted[-1].isoformat()}, "
                       f"less than {cooldown} ago{why}")
    today = [t for t in submitted if now - t < timedelta(days=1)]
    if len(today) >= policy.max_per_day:
        reasons.append(f"daily cap: {len(today)} retrain(s) in the last 24 h, at most {policy.max_per_day}")
    return PolicyDecision(not reasons, reasons)


def rejections_since_promotion(history: Iterable[Mapping[str, Any]]) -> int:
    """Challengers rejected or rolled back after the latest promoted one, in submission order (failed and skipped
    runs never produced a challenger to judge: they neither count nor reset)."""
    count = 0
    for run in sorted((r for r in history if r.get("submitted_at")), key=lambda r: parse_time(r["submitted_at"])):
        if run["state"] == P.PROMOTED:
            count = 0
        elif run["state"] in (P.REJECTED, P.ROLLED_BACK):
            count += 1
    return count


def enough_rows(new_rows: int, policy: RetrainPolicy) -> PolicyDecision:
    if new_rows < policy.min_new_labelled_rows:
        return PolicyDecision(False, [f"only {new_rows} new labelled rows, at least "
                                      f"{policy.min_new_labelled_rows} needed"])
    return PolicyDecision(True)


def last_data_end(history: Iterable[Mapping[str, Any]]) -> datetime | None:
    """End of the data window of the latest submitted run: rows after it are 'new'."""
    ends = [parse_time(r["window"]["end"]) for r in history if r.get("submitted_at") and r.get("window")]
    return max(ends, default=None)


def performance_at_risk(evidence: Mapping[str, Any] | None, policy: RetrainPolicy) -> PolicyDecision:
    """Is the drifting window's performance, realized or estimated, below the reference's beyond noise?

    `evidence`: the `performance` object of mlops.drift.detected.v1, {"realized": {...}, "estimated": {...}},
    each with metric, value, baseline, standard_error (or an older event's margin: the noise allowance) and
    higher_is_better; for a
    language model also "answers" (answer quality, already decided against the reference's runs).
    """
    if not policy.require_performance_at_risk:
        return PolicyDecision(True, ["the retrain policy does not require performance at risk"])
    seen = []
    for kind in ("realized", "estimated"):
        found = (evidence or {}).get(kind) or {}
        value, baseline = found.get("value"), found.get("baseline")
        if value is None or baseline is None:
            continue
        drop = (baseline - value) if found.get("higher_is_better", True) else (value - baseline)
        error = found.get("standard_error")
        margin = policy.noise_z * float(error) if error is not None else float(found.get("margin") or 0.0)
        line = (f"{kind} {found.get('metric')} {value:.3f} vs reference {baseline:.3f}: drop {drop:+.3f}, "
                f"noise {margin:.3f} + margin {policy.min_performance_drop}")
        if drop > margin + policy.min_performance_drop:
            return PolicyDecision(True, [f"performance at risk: {line}"])
        seen.append(line)
    answers = (evidence or {}).get("answers") or {}
    if answers.get("value") is not None and answers.get("baseline") is not None:
        line = (f"answer quality {answers.get('metric')} {answers['value']:.3f} vs reference "
                f"{answers['baseline']:.3f}")
        if answers.get("breached"):  # already decided beyond the reference's runs and the effect floor
            return PolicyDecision(True, [f"performance at risk: {line}, below the reference's own variation"])
        seen.append(line)
    if not seen:
        return PolicyDecision(False, ["drift alone does not retrain: no performance evidence in the window "
                                      "(no labels yet and no score to estimate from)"])
    return PolicyDecision(False, [f"drift alone does not retrain: {'; '.join(seen)}"])


def stale_champion(trained_until: datetime | None, now: datetime, policy: RetrainPolicy) -> PolicyDecision:
    """May drift retrain a champion whose performance holds, because its training data is old?"""
    if policy.max_model_age is None or trained_until is None:
        return PolicyDecision(False)
    age = now - trained_until
    if age <= policy.max_model_age:
        return PolicyDecision(False, [f"the champion's training data ended {age.days} days ago, within "
                                      f"max_model_age {policy.max_model_age.days} days"])
    return PolicyDecision(True, [f"stale champion: its training data ended {age.days} days ago "
                                 f"(max_model_age {policy.max_model_age.days} days); the gate decides"])
