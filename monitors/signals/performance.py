"""Model performance once ground truth has arrived (late labels: see monitors/check.py).

Classification: AUC, accuracy, F1, log loss; regression: MAE, RMSE (sklearn, imported lazily). The
primary metric is compared with a floor/ceiling from the spec and with the model's own performance on
the reference set. With fewer labelled rows than `min_labels` the finding says so instead of alarming.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "performance"
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "f1": True, "log_loss": False, "mae": False, "rmse": False}


@dataclass(frozen=True)
class PerformanceEvaluator:
    prediction_column: str
    prediction_kind: str  # score | class | value
    label_column: str
    task: str  # classification | regression
    metric: str | None = None
    floor: float | None = None  # spec `min`, for higher-is-better metrics
    ceiling: float | None = None  # spec `max`, for lower-is-better metrics
    max_drop: float = 0.05
    min_labels: int = 30
    severity: Severity = Severity.CRITICAL
    name: str = SIGNAL

    @property
    def primary(self) -> str:
        if self.metric:
            return self.metric
        if self.task == "regression":
            return "rmse"
        return "auc" if self.prediction_kind == "score" else "accuracy"

    def fit(self, reference) -> "FittedPerformance":
        baseline = None
        if self.label_column in reference and self.prediction_column in reference:
            metrics = self.metrics(reference)
            baseline = metrics.get(self.primary)
        return FittedPerformance(self, baseline)

    def metrics(self, frame) -> dict[str, float]:
        labelled = frame[frame[self.label_column].notna() & frame[self.prediction_column].notna()]
        truth, pred = labelled[self.label_column].to_numpy(), labelled[self.prediction_column].to_numpy()
        if self.task == "regression":
            return _regression(truth.astype(float), pred.astype(float))
        return _classification(truth, pred, self.prediction_kind)


def _regression(truth, pred) -> dict[str, float]:
    import numpy as np

    err = pred - truth
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def _classification(truth, pred, kind: str) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    if kind != "score":
        return {"accuracy": float(accuracy_score(truth, pred)),
                "f1": float(f1_score(truth, pred, average="macro", zero_division=0))}
    truth = truth.astype(int)
    pred = pred.astype(float)
    hard = (pred >= 0.5).astype(int)
    out = {"accuracy": float(accuracy_score(truth, hard)), "f1": float(f1_score(truth, hard, zero_division=0))}
    if len(set(truth.tolist())) == 2:  # AUC and log loss need both classes in the window
        out["auc"] = float(roc_auc_score(truth, pred))
        out["log_loss"] = float(log_loss(truth, pred.clip(1e-15, 1 - 1e-15), labels=[0, 1]))
    return out


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
        values = cfg.metrics(frame)
        value = values.get(metric)
        if value is None:
            return [Finding(SIGNAL, metric, None, None, False, details={
                **base, "metrics": values, "insufficient": True,
                "note": f"{metric} is undefined on this window (e.g. only one class labelled)"})]
        threshold, breached, reasons = self._judge(metric, value)
        return [Finding(SIGNAL, metric, value, threshold, breached, cfg.severity if breached else Severity.INFO,
                        method=metric, details={**base, "metrics": values, "reasons": reasons})]

    def _judge(self, metric: str, value: float) -> tuple[float | None, bool, list[str]]:
        """The tightest bound from the spec limit and the allowed drop from the baseline."""
        cfg, higher = self.config, HIGHER_IS_BETTER[metric]
        bounds: list[tuple[float, str]] = []
        limit = cfg.floor if higher else cfg.ceiling
        if limit is not None:
            bounds.append((limit, "spec limit"))
        if self.baseline is not None:
            allowed = abs(self.baseline) * cfg.max_drop
            bounds.append((self.baseline - allowed if higher else self.baseline + allowed, "reference performance"))
        if not bounds:
            return None, False, []
        pick: Any = max if higher else min
        threshold = pick(b for b, _ in bounds)
        reasons = [why for b, why in bounds if (value < b if higher else value > b)]
        return threshold, bool(reasons), reasons
