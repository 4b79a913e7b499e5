"""The champion/challenger gate: pure and deterministic, so a decision can be replayed from its numbers.

The challenger must beat the champion on the primary metric by `min_improvement`, and must not fall
behind it by more than `max_slice_regression` on any declared slice with at least `min_slice_rows` rows.
Metrics where lower is better (log loss) are compared with the sign flipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

LOWER_IS_BETTER = frozenset({"log_loss"})
METRICS = ("auc", "accuracy", "f1", "log_loss")


@dataclass(frozen=True)
class EvalReport:
    """One model's metrics on the holdout: overall and per slice ("origin=JFK")."""

    overall: Mapping[str, float]
    slices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.overall.get("rows", 0))

    @classmethod
    def from_flat(cls, metrics: Mapping[str, float], role: str) -> "EvalReport | None":
        """From the evaluate step's flat metrics ("challenger/auc", "challenger/slice/origin/JFK/auc")."""
        overall: dict[str, float] = {}
        slices: dict[str, dict[str, float]] = {}
        for key, value in metrics.items():
            parts = key.split("/")
            if parts[0] != role:
                continue
            if len(parts) == 2:
                overall[parts[1]] = float(value)
            elif len(parts) == 5 and parts[1] == "slice":
                name = f"{parts[2]}={parts[3].replace('%2F', '/')}"
                slices.setdefault(name, {})[parts[4]] = float(value)
        return cls(overall, slices) if overall else None


@dataclass(frozen=True)
class GatePolicy:
    primary_metric: str = "auc"
    min_improvement: float = 0.005
    max_slice_regression: float = 0.02
    min_holdout_rows: int = 200
    min_slice_rows: int = 500

    def __post_init__(self) -> None:
        if self.primary_metric not in METRICS:
            raise ValueError(f"primary_metric {self.primary_metric!r} is not one of {METRICS}")
        if self.max_slice_regression < 0 or self.min_holdout_rows < 0:
            raise ValueError("max_slice_regression and min_holdout_rows cannot be negative")

    def to_json(self) -> dict[str, Any]:
        return {"primary_metric": self.primary_metric, "min_improvement": self.min_improvement,
                "max_slice_regression": self.max_slice_regression, "min_holdout_rows": self.min_holdout_rows,
                "min_slice_rows": self.min_slice_rows}


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reasons: list[str]
    numbers: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reasons": list(self.reasons), "numbers": dict(self.numbers)}


def _gain(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive = better), whatever the metric's direction."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion


def decide(champion: EvalReport | None, challenger: EvalReport, policy: GatePolicy) -> GateDecision:
    metric = policy.primary_metric
    numbers: dict[str, Any] = {"policy": policy.to_json(), "holdout_rows": challenger.rows,
                               "challenger": challenger.overall.get(metric),
                               "champion": champion.overall.get(metric) if champion else None}
    reasons: list[str] = []
    if challenger.rows < policy.min_holdout_rows:
        reasons.append(f"holdout has {challenger.rows} rows, fewer than {policy.min_holdout_rows}")
    if numbers["challenger"] is None:
        reasons.append(f"challenger has no {metric} on the holdout (a single class?)")
    if reasons:
        return GateDecision(False, reasons, numbers)
    if champion is None or numbers["champion"] is None:
        return GateDecision(True, ["no champion to compare with: the challenger becomes the first model"], numbers)
    gain = _gain(metric, numbers["challenger"], numbers["champion"])
    numbers["improvement"] = gain
    if gain < policy.min_improvement:
        reasons.append(f"{metric} improves by {gain:+.4f}, less than the required {policy.min_improvement:+.4f}")
    regressions = _slice_regressions(champion, challenger, policy)
    numbers["slices"] = regressions
    for name, drop in sorted(regressions.items()):
        if drop > policy.max_slice_regression:
            reasons.append(f"slice {name}: {metric} drops by {drop:.4f}, more than {policy.max_slice_regression}")
    if reasons:
        return GateDecision(False, reasons, numbers)
    return GateDecision(True, [f"{metric} improves by {gain:+.4f} and no slice regresses beyond "
                               f"{policy.max_slice_regression}"], numbers)


def _slice_regressions(champion: EvalReport, challenger: EvalReport, policy: GatePolicy) -> dict[str, float]:
    """Slice -> how far the challenger falls behind the champion there (negative: it is ahead)."""
    metric = policy.primary_metric
    drops = {}
    for name, ours in challenger.slices.items():
        theirs = champion.slices.get(name)
        if theirs is None or metric not in ours or metric not in theirs:
            continue
        if ours.get("rows", 0) < policy.min_slice_rows:
            continue
        drops[name] = -_gain(metric, ours[metric], theirs[metric])
    return drops
