"""Performance without labels: confidence-based performance estimation (CBPE, as in NannyML).

A classifier's score, once calibrated, is the chance that the row is positive. Calibrated on the
reference's scored holdout (isotonic regression of its labels on its scores), every window's scores
give an expected confusion matrix at each threshold - expected true positives are the sum of calibrated
probabilities above it, expected false positives the sum of their complements - hence an expected ROC
curve and AUC, and an expected accuracy, before any label has arrived.

The uncertainty is the spread of the realized metric if the calibrated probabilities were true: labels
are drawn from them and the metric recomputed. The estimate assumes the relation between inputs and
outcome held (covariate shift only); under concept drift it is wrong and only realized performance
shows it, which is why both are reported side by side. A drop breaches as a realized one does: at least
the effect floor (`max_drop`, 0.03 by default) and beyond that spread (performance.judge_drop).

Binary classifiers with a score only; other kinds give an "insufficient" finding saying why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.types import Finding, Severity, TelemetryBatch
from monitors.signals.performance import NOISE_Z, judge_drop  # one noise rule for both

SIGNAL = "estimated_performance"
METRICS = ("auc", "accuracy")
_DRAWS, _MAX_ROWS = 60, 20_000
BINARY_TASKS = ("binary", "classification")  # the spec says binary; "classification" is its older name


@dataclass(frozen=True)
class EstimatedPerformanceEvaluator:
    prediction_column: str
    prediction_kind: str  # score | class | value
    label_column: str
    task: str  # the spec's label task: binary | multiclass | regression ("classification": the older name)
    metric: str | None = None
    max_drop: float | None = None  # effect floor, as for realized performance (performance.allowed_drop)
    min_rows: int = 100
    min_reference_rows: int = 200
    severity: Severity = Severity.WARNING
    name: str = SIGNAL

    @property
    def primary(self) -> str:
        return self.metric if self.metric in METRICS else "auc"

    def fit(self, reference) -> "FittedEstimate":
        why = self._unsupported()
        if why:
            return FittedEstimate(self, None, None, why)
        columns = [c for c in (self.prediction_column, self.label_column) if c in reference]
        if len(columns) < 2:
            return FittedEstimate(self, None, None, "the reference has no scored and labelled rows to calibrate on")
        rows = reference[columns].dropna()
        score = rows[self.prediction_column].to_numpy(dtype=float)
        try:
            label = rows[self.label_column].to_numpy(dtype=float)
        except (TypeError, ValueError):
            return FittedEstimate(self, None, None, "the reference labels are not 0/1")
        if score.size < self.min_reference_rows or len(np.unique(label)) != 2:
            return FittedEstimate(self, None, None, f"the reference has {score.size} scored, labelled rows "
                                                    f"(both classes needed, at least {self.min_reference_rows})")
        calibrator = Calibration.fit(score, label)
        baseline = realized(self.primary, score, label)
        return FittedEstimate(self, calibrator, baseline, None)

    def _unsupported(self) -> str | None:
        if self.task not in BINARY_TASKS or self.prediction_kind != "score":
            return (f"label-free estimation needs a binary classifier's score; this monitor's prediction is "
                    f"a {self.prediction_kind} of a {self.task} task")
        return None


@dataclass(frozen=True)
class Calibration:
    """Isotonic map from score to probability, learned on the reference holdout (monotone, in [0, 1])."""

    knots_x: np.ndarray
    knots_y: np.ndarray
    rows: int

    @classmethod
    def fit(cls, score: np.ndarray, label: np.ndarray) -> "Calibration":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, label)
        return cls(np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float),
                   int(score.size))

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return np.interp(score, self.knots_x, self.knots_y)


@dataclass(frozen=True)
class FittedEstimate:
    config: EstimatedPerformanceEvaluator
    calibration: Calibration | None
    baseline: float | None  # the reference's realized primary metric
    unsupported: str | None

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        cfg = self.config
        metric = cfg.primary
        base = {"metric": metric, "baseline": self.baseline, "method": "cbpe"}
        if self.calibration is None:
            return [_insufficient(metric, {**base, "note": self.unsupported})]
        frame = current.frame
        score = (frame[cfg.prediction_column].dropna().to_numpy(dtype=float)
                 if cfg.prediction_column in frame else np.empty(0))
        if score.size < cfg.min_rows:
            return [_insufficient(metric, {**base, "rows": int(score.size), "note": (
                f"insufficient data: {score.size} scored rows in the window, at least {cfg.min_rows} needed")})]
        probability = self.calibration(score)
        values = {m: expected(m, score, probability) for m in METRICS}
        value = values[metric]
        noise = spread(metric, score, probability)
        threshold, breached = None, False
        if self.baseline is not None:  # a NaN estimate (one class only) compares false: never breaches
            threshold, _, breached = judge_drop(metric, value, self.baseline, cfg.max_drop, NOISE_Z * noise)
        matrix = expected_confusion(score, probability)
        return [Finding(SIGNAL, metric, value, threshold, breached, cfg.severity if breached else Severity.INFO,
                        method="cbpe", details={**base, "rows": int(score.size), "metrics": values,
                                                "standard_error": noise, "margin": NOISE_Z * noise,
                                                "expected_confusion": matrix,
                                                "calibration_rows": self.calibration.rows})]


def expected(metric: str, score: np.ndarray, probability: np.ndarray) -> float:
    if metric == "accuracy":
        hard = score >= 0.5
        return float(np.mean(np.where(hard, probability, 1 - probability)))
    return expected_auc(score, probability)


def expected_auc(score: np.ndarray, probability: np.ndarray) -> float:
    """Area under the expected ROC curve; tied scores form one step (the tie-averaged AUC)."""
    order = np.argsort(-score, kind="stable")
    s, p = score[order], probability[order]
    tp, fp = np.cumsum(p), np.cumsum(1 - p)
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # the last row of each group of tied scores
    tpr = np.concatenate([[0.0], tp[ends] / tp[-1]]) if tp[-1] > 0 else None
    fpr = np.concatenate([[0.0], fp[ends] / fp[-1]]) if fp[-1] > 0 else None
    if tpr is None or fpr is None:
        return float("nan")
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def expected_confusion(score: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    hard = score >= threshold
    return {"tp": float(probability[hard].sum()), "fp": float((1 - probability[hard]).sum()),
            "tn": float((1 - probability[~hard]).sum()), "fn": float(probability[~hard].sum()),
            "threshold": threshold}


def realized(metric: str, score: np.ndarray, label: np.ndarray) -> float | None:
    label = label.astype(int)
    if metric == "accuracy":
        return float(np.mean((score >= 0.5).astype(int) == label))
    positives = int(label.sum())
    negatives = label.size - positives
    if positives == 0 or negatives == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def spread(metric: str, score: np.ndarray, probability: np.ndarray) -> float:
    """Standard deviation of the realized metric when labels are drawn from the calibrated probabilities."""
    rng = np.random.default_rng(0)
    scale = 1.0
    if score.size > _MAX_ROWS:  # the full window's spread is smaller: estimate on a sample, scale it down
        keep = rng.choice(score.size, _MAX_ROWS, replace=False)
        score, probability, scale = score[keep], probability[keep], float(np.sqrt(_MAX_ROWS / score.size))
    draws = [realized(metric, score, (rng.uniform(size=score.size) < probability).astype(int))
             for _ in range(_DRAWS)]
    kept = [d for d in draws if d is not None]
    return float(np.std(kept, ddof=1)) * scale if len(kept) > 1 else 0.0


def _insufficient(metric: str, details: dict[str, Any]) -> Finding:
    return Finding(SIGNAL, metric, None, None, False, method="cbpe", details={**details, "insufficient": True})
