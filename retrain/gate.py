"""The champion/challenger gate: pure and deterministic, so a decision can be replayed from its numbers.

The challenger must beat the champion on the primary metric by `min_improvement`, and must not fall
behind it by more than `max_slice_regression` on any declared slice with at least `min_slice_rows` rows.
The primary metric is the task's unless set: auc (binary), macro_f1 (multiclass), mae (regression).
Bounded metrics (auc, accuracy, macro_f1) compare absolute differences: 0.005 is half a point of AUC.
Unbounded ones (log_loss, mae, rmse), where lower is better, compare differences relative to the
champion's value: 0.005 is a 0.5% lower error. So one setting means the same on any scale of target.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from retrain.components._metrics import LOWER_IS_BETTER, METRICS, PRIMARY

RELATIVE = LOWER_IS_BETTER  # unbounded metrics: differences are relative to the champion's value
ALL_METRICS = tuple(dict.fromkeys(m for names in METRICS.values() for m in names))


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
    primary_metric: str | None = None  # None: the task's primary metric
    min_improvement: float = 0.005
    max_slice_regression: float = 0.02
    min_holdout_rows: int = 200
    min_slice_rows: int = 500

    def __post_init__(self) -> None:
        if self.primary_metric is not None and self.primary_metric not in ALL_METRICS:
            raise ValueError(f"primary_metric {self.primary_metric!r} is not one of {ALL_METRICS}")
        if self.max_slice_regression < 0 or self.min_holdout_rows < 0:
            raise ValueError("max_slice_regression and min_holdout_rows cannot be negative")

    def for_task(self, task: str) -> "GatePolicy":
        """This policy with its primary metric resolved for `task`; a metric the task lacks is refused."""
        if task not in METRICS:
            raise ValueError(f"task {task!r} is not one of {', '.join(METRICS)}")
        metric = self.primary_metric or PRIMARY[task]
        if metric not in METRICS[task]:
            raise ValueError(f"{metric} is not a {task} metric (those are {', '.join(METRICS[task])})")
        return dataclasses.replace(self, primary_metric=metric)

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


def gain(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive = better), whatever the metric's direction and scale."""
    if metric in RELATIVE:
        return (champion - challenger) / abs(champion) if champion else champion - challenger
    return challenger - champion


def _describe(metric: str, value: float) -> str:
    return f"{value:+.2%}" if metric in RELATIVE else f"{value:+.4f}"


def decide(champion: EvalReport | None, challenger: EvalReport, policy: GatePolicy, task: str = "binary"
           ) -> GateDecision:
    policy = policy.for_task(task)
    metric = policy.primary_metric
    numbers: dict[str, Any] = {"policy": policy.to_json(), "task": task, "holdout_rows": challenger.rows,
                               "challenger": challenger.overall.get(metric),
                               "champion": champion.overall.get(metric) if champion else None}
    reasons: list[str] = []
    if challenger.rows < policy.min_holdout_rows:
        reasons.append(f"holdout has {challenger.rows} rows, fewer than {policy.min_holdout_rows}")
    if numbers["challenger"] is None:
        reasons.append(f"challenger has no {metric} on the holdout (a single class, or labels without "
                       f"probabilities?)")
    if reasons:
        return GateDecision(False, reasons, numbers)
    if champion is None or numbers["champion"] is None:
        return GateDecision(True, ["no champion to compare with: the challenger becomes the first model"], numbers)
    improvement = gain(metric, numbers["challenger"], numbers["champion"])
    numbers["improvement"] = improvement
    if improvement < policy.min_improvement:
        reasons.append(f"{metric} improves by {_describe(metric, improvement)}, less than the required "
                       f"{_describe(metric, policy.min_improvement)}")
    regressions = _slice_regressions(champion, challenger, policy)
    numbers["slices"] = regressions
    for name, drop in sorted(regressions.items()):
        if drop > policy.max_slice_regression:
            reasons.append(f"slice {name}: {metric} worse by {_describe(metric, drop)[1:]}, more than "
                           f"{_describe(metric, policy.max_slice_regression)[1:]}")
    if reasons:
        return GateDecision(False, reasons, numbers)
    return GateDecision(True, [f"{metric} improves by {_describe(metric, improvement)} and no slice regresses "
                               f"beyond {_describe(metric, policy.max_slice_regression)[1:]}"], numbers)


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
        drops[name] = -gain(metric, ours[metric], theirs[metric])
    return drops
