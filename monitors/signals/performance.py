"""Model performance once ground truth has arrived (late labels: see monitors/check.py).

By task: binary (a score prediction: AUC, log loss, accuracy, F1; primary AUC; a class prediction:
accuracy, F1), multiclass (macro F1, accuracy; primary macro F1; log loss would need every class's
probability, which the telemetry's one score does not carry), regression (MAE, RMSE; primary MAE).
The primary metric is compared with a floor/ceiling from the spec and with the model's own performance
on the reference set. With fewer labelled rows than `min_labels` the finding says so instead of alarming.

A drop from the reference decides the calibrated way, as drift does: it breaches when it is large enough
(at least `max_drop`, the effect floor) AND beyond the window's own sampling noise (bootstrap). The floor is
in the metric's own units for bounded metrics (0.03 = three points of AUC: the drop an on-call engineer
acts on) and relative for unbounded ones (0.05 = a 5% higher MAE), the convention of the gate's
`min_improvement`: one setting then means the same on any scale of target.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "performance"
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "f1": True, "macro_f1": True, "log_loss": False, "mae": False,
                    "rmse": False}
BOUNDED = frozenset({"auc", "accuracy", "f1", "macro_f1"})  # in [0, 1]: drops compared in the metric's units
DEFAULT_MAX_DROP = {True: 0.03, False: 0.05}  # bounded: absolute; unbounded: relative to the baseline


def allowed_drop(metric: str, baseline: float, max_drop: float | None) -> float:
    """The effect floor in the metric's units: `max_drop` itself for bounded metrics, a share of the baseline
    for unbounded ones (None: 0.03 absolute, or 5% of the baseline)."""
    bounded = metric in BOUNDED
    floor = DEFAULT_MAX_DROP[bounded] if max_drop is None else max_drop
    return floor if bounded else abs(baseline) * floor


def judge_drop(metric: str, value: float, baseline: float, max_drop: float | None, margin: float
               ) -> tuple[float, float, bool]:
    """(threshold, drop, breached): the drop breaches when it reaches the floor and exceeds the noise margin."""
    higher = HIGHER_IS_BETTER.get(metric, True)
    allowed = allowed_drop(metric, baseline, max_drop)
    drop = baseline - value if higher else value - baseline
    threshold = baseline - allowed if higher else baseline + allowed
    return threshold, drop, drop >= allowed and drop > margin


@dataclass(frozen=True)
class PerformanceEvaluator:
    prediction_column: str
    prediction_kind: str  # score | class | value
    label_column: str
    task: str  # binary | multiclass | regression
    metric: str | None = None
    floor: float | None = None  # spec `min`, for higher-is-better metrics
    ceiling: float | None = None  # spec `max`, for lower-is-better metrics
    max_drop: float | None = None  # the effect floor (allowed_drop); None: 0.03 (bounded) or 5% (unbounded)
    min_labels: int = 30
    severity: Severity = Severity.CRITICAL
    name: str = SIGNAL

    @property
    def primary(self) -> str:
        if self.metric:
            return self.metric
        if self.task == "regression":
            return "mae"
        if self.task == "multiclass":
            return "macro_f1"
        return "auc" if self.prediction_kind == "score" else "accuracy"

    def fit(self, reference) -> "FittedPerformance":
        baseline = None
        if self.label_column in reference and self.prediction_column in reference:
            metrics = self.metrics(reference)
            baseline = metrics.get(self.primary)
        return FittedPerformance(self, baseline)

    def metrics(self, frame, only: str | None = None) -> dict[str, float]:
        labelled = frame[frame[self.label_column].notna() & frame[self.prediction_column].notna()]
        truth, pred = labelled[self.label_column].to_numpy(), labelled[self.prediction_column].to_numpy()
        if self.task == "regression":
            return _regression(truth.astype(float), pred.astype(float))
        if self.task == "multiclass":
            return _multiclass(truth, pred, only)
        return _classification(truth, pred, self.prediction_kind, only)


def _regression(truth, pred) -> dict[str, float]:
    import numpy as np

    err = pred - truth
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def _multiclass(truth, pred, only: str | None = None) -> dict[str, float]:
    """Labels compared as text: telemetry may carry 2 where the ground truth says "2"."""
    from sklearn.metrics import accuracy_score, f1_score

    truth, pred = truth.astype(str), pred.astype(str)
    compute = {"accuracy": lambda: accuracy_score(truth, pred),
               "macro_f1": lambda: f1_score(truth, pred, average="macro", zero_division=0)}
    return {name: float(fn()) for name, fn in compute.items() if only in (None, name)}


def _classification(truth, pred, kind: str, only: str | None = None) -> dict[str, float]:
    """Every metric, or `only` one of them (the bootstrap needs just the primary)."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    if kind != "score":
        hard, average = pred, "macro"
    else:
        truth, pred = truth.astype(int), pred.astype(float)
        hard, average = (pred >= 0.5).astype(int), "binary"
    both = kind == "score" and len(set(truth.tolist())) == 2  # AUC and log loss need both classes
    compute = {
        "accuracy": lambda: accuracy_score(truth, hard),
        "f1": lambda: f1_score(truth, hard, average=average, zero_division=0),
        **({"auc": lambda: roc_auc_score(truth, pred),
            "log_loss": lambda: log_loss(truth, pred.clip(1e-15, 1 - 1e-15), labels=[0, 1])} if both else {}),
    }
    return {name: float(fn()) for name, fn in compute.items() if only in (None, name)}


# One-sided alpha 0.001, the health signal's: a performance finding pages (critical), so a window without a
# real drop crosses the noise margin about once in a thousand checks (z 2 was 2.3%: on the synthetic stable
# histories of benchmarks/alerts.py, once the floor no longer added to the margin, 3-9 of 270 days breached).
NOISE_ALPHA = 0.001
NOISE_Z = NormalDist().inv_cdf(1 - NOISE_ALPHA)  # 3.09
_BOOTSTRAP, _BOOTSTRAP_MAX_ROWS = 40, 20_000


def standard_error(cfg: PerformanceEvaluator, frame, metric: str) -> float:
    """Bootstrap standard error of `metric` on this window's labelled rows (a capped sample of them).

    Draws run on NumPy arrays with closed-form metrics where one exists (AUC by ranks, accuracy, log
    loss); the same metric through sklearn's validated entry points cost ~0.5 s per check.
    """
    import numpy as np

    labelled = frame[frame[cfg.label_column].notna() & frame[cfg.prediction_column].notna()]
    rng = np.random.default_rng(0)
    if len(labelled) > _BOOTSTRAP_MAX_ROWS:  # the error of the full window is smaller: scale it down
        scale = np.sqrt(_BOOTSTRAP_MAX_ROWS / len(labelled))
        labelled = labelled.sample(_BOOTSTRAP_MAX_ROWS, random_state=0)
    else:
        scale = 1.0
    fast = _fast_metric(metric) if cfg.task == "binary" and cfg.prediction_kind == "score" else None
    truth = labelled[cfg.label_column].to_numpy()
    pred = labelled[cfg.prediction_column].to_numpy()
    draws = []
    for _ in range(_BOOTSTRAP):
        index = rng.integers(0, len(labelled), len(labelled))
        value = (fast(truth[index].astype(int), pred[index].astype(float)) if fast
                 else cfg.metrics(labelled.iloc[index], only=metric).get(metric))
        if value is not None:
            draws.append(value)
    return float(np.std(draws, ddof=1) * scale) if len(draws) > 1 else 0.0


def _fast_metric(metric: str):
    import numpy as np
    from scipy.stats import rankdata

    def auc(truth, score):
        positives = int(truth.sum())
        negatives = len(truth) - positives
        if positives == 0 or negatives == 0:
            return None
        ranks = rankdata(score)  # average ranks for ties: the Mann-Whitney form equals roc_auc_score
        return float((ranks[truth == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))

    def log_loss(truth, score):
        if truth.min() == truth.max():
            return None
        p = score.clip(1e-15, 1 - 1e-15)
        return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))

    def accuracy(truth, score):
        return float(np.mean((score >= 0.5).astype(int) == truth))

    return {"auc": auc, "log_loss": log_loss, "accuracy": accuracy}.get(metric)


@dataclass(frozen=True)
class FittedPerformance:
    config: PerformanceEvaluator
    baseline: float | None  # the primary metric on the reference set, if it has labels and predictions

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        cfg, frame = self.config, current.frame
        metric = cfg.primary
        missing = [c for c in (cfg.label_column, cfg.prediction_column) if c not in frame]
        labelled = 0 if missing else int((frame[cfg.label_column].notna() & frame[cfg.prediction_column].notna()).sum())
        base = {"metric": metric, "labels": labelled, "window": current.window.to_json(), "baseline": self.baseline}
        if labelled < cfg.min_labels:
            note = f"missing columns {missing}" if missing else f"only {labelled} labelled rows (< {cfg.min_labels})"
            details = {**base, "note": f"not enough ground truth to judge: {note}", "insufficient": True}
            return [Finding(SIGNAL, metric, None, None, False, details=details)]
        try:
            values = cfg.metrics(frame)
        except (ValueError, TypeError) as exc:  # labels or predictions of the wrong type: a finding, not a crash
            return [Finding(SIGNAL, metric, None, None, False, details={
                **base, "insufficient": True, "note": f"cannot compute {metric}: {exc}"})]
        value = values.get(metric)
        if value is None:
            return [Finding(SIGNAL, metric, None, None, False, details={
                **base, "metrics": values, "insufficient": True,
                "note": f"{metric} is undefined on this window (e.g. only one class labelled)"})]
        noise = standard_error(cfg, frame, metric)
        threshold, breached, reasons = self._judge(metric, value, NOISE_Z * noise)
        floor = None if self.baseline is None else allowed_drop(metric, self.baseline, cfg.max_drop)
        return [Finding(SIGNAL, metric, value, threshold, breached, cfg.severity if breached else Severity.INFO,
                        method=metric, details={**base, "metrics": values, "reasons": reasons,
                                                "standard_error": noise, "margin": NOISE_Z * noise,
                                                "effect_floor": floor})]

    def _judge(self, metric: str, value: float, margin: float) -> tuple[float | None, bool, list[str]]:
        """The tightest bound from the spec limit and the allowed drop from the baseline.

        The spec limit breaches only when the window is worse by more than `margin` (its sampling noise), so
        a small window's unlucky draw does not page anyone; the drop from the reference breaches when it
        reaches the effect floor and is beyond that noise (judge_drop).
        """
        cfg, higher = self.config, HIGHER_IS_BETTER[metric]
        bounds: list[tuple[float, str]] = []
        reasons: list[str] = []
        limit = cfg.floor if higher else cfg.ceiling
        if limit is not None:
            bounds.append((limit, "spec limit"))
            if value + margin < limit if higher else value - margin > limit:
                reasons.append("spec limit")
        if self.baseline is not None:
            threshold, _, breached = judge_drop(metric, value, self.baseline, cfg.max_drop, margin)
            bounds.append((threshold, "reference performance"))
            if breached:
                reasons.append("reference performance")
        if not bounds:
            return None, False, []
        pick: Any = max if higher else min
        return pick(b for b, _ in bounds), bool(reasons), reasons
