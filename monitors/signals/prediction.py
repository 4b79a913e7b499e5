"""Prediction drift: the drift engine on the model's output column (score, class or value)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.types import Finding, Severity, TelemetryBatch
from monitors.signals.data_drift import _feature_finding, reference_profile

SIGNAL = "prediction_drift"


@dataclass(frozen=True)
class PredictionDriftEvaluator:
    column: str
    kind: str  # score | class | value
    method: str | None = None
    threshold: float | None = None
    profiles: Any = None
    fingerprint: str = ""
    severity: Severity = Severity.WARNING
    name: str = SIGNAL

    @property
    def feature_kind(self) -> str:
        return "categorical" if self.kind == "class" else "numeric"

    def fit(self, reference) -> "FittedPredictionDrift":
        if self.column not in reference or reference[self.column].notna().sum() == 0:
            return FittedPredictionDrift(self, None)
        kinds = {self.column: self.feature_kind}
        methods = {self.column: self.method} if self.method else None
        profile = reference_profile(reference[[self.column]], kinds, methods, self.profiles, self.fingerprint)
        return FittedPredictionDrift(self, profile)


@dataclass(frozen=True)
class FittedPredictionDrift:
    config: PredictionDriftEvaluator
    profile: Any  # None when the reference has no predictions to compare with

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        from monitors.drift.engine import compare

        cfg, frame = self.config, current.frame
        if self.profile is None:
            return [_insufficient(cfg.column, f"the reference has no {cfg.column!r} column to compare with")]
        if cfg.column not in frame or frame[cfg.column].notna().sum() == 0:
            return [_insufficient(cfg.column, f"no {cfg.column!r} values in the window")]
        thresholds = {cfg.column: cfg.threshold} if cfg.threshold is not None else None
        (drift,) = compare(self.profile, frame[[cfg.column]], thresholds=thresholds)
        finding = _feature_finding(drift, bool(drift.drifted), cfg.severity)
        return [Finding(SIGNAL, finding.name, finding.statistic, finding.threshold, finding.breached,
                        finding.severity, method=finding.method, p_value=finding.p_value, details=finding.details)]


def _insufficient(column: str, note: str) -> Finding:
    return Finding(SIGNAL, column, None, None, False, details={"note": note, "insufficient": True})
