"""Prediction drift: the drift engine on the model's output column (score, class or value).

Calibrated by default, like data drift: the window's effect on the output is judged against windows of
the same size drawn from the reference's own predictions in time order (the scored holdout), and must
also reach an effect floor. A raw method threshold (`policy: threshold`) remains available.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
    policy: str = "calibrated"  # calibrated | threshold
    fwer: float = 0.01
    effect_floor: float | None = None
    resamples: int = 200
    min_rows: int = 30
    calibration_dir: Path | None = None

    @property
    def feature_kind(self) -> str:
        return "categorical" if self.kind == "class" else "numeric"

    def fit(self, reference) -> "FittedPredictionDrift":
        if self.column not in reference or reference[self.column].notna().sum() == 0:
            return FittedPredictionDrift(self, None, None)
        kinds = {self.column: self.feature_kind}
        methods = {self.column: self.method} if self.method else None
        profile = reference_profile(reference[[self.column]], kinds, methods, self.profiles, self.fingerprint)
        calibrator = None
        if self.policy == "calibrated":
            from monitors.drift.verdict import Calibrator

            cache_dir = self.calibration_dir
            if cache_dir is None and self.profiles is not None and getattr(self.profiles, "root", None):
                cache_dir = Path(self.profiles.root) / "calibration"
            # only the scored rows, in time order: a reference scores its holdout, not its training rows
            scored = reference.loc[reference[self.column].notna(), [self.column]]
            calibrator = Calibrator(profile, scored, resamples=self.resamples, seed=0, cache_dir=cache_dir)
        return FittedPredictionDrift(self, profile, calibrator)


@dataclass(frozen=True)
class FittedPredictionDrift:
    config: PredictionDriftEvaluator
    profile: Any  # None when the reference has no predictions to compare with
    calibrator: Any  # None under policy threshold

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        from monitors.drift.engine import compare

        cfg, frame = self.config, current.frame
        if self.profile is None:
            return [_insufficient(cfg.column, f"the reference has no {cfg.column!r} column to compare with")]
        rows = int(frame[cfg.column].notna().sum()) if cfg.column in frame else 0
        if rows < cfg.min_rows:
            return [_insufficient(cfg.column, f"insufficient data: {rows} {cfg.column!r} values in the window, "
                                              f"at least {cfg.min_rows} needed to judge")]
        thresholds = {cfg.column: cfg.threshold} if cfg.threshold is not None else None
        (drift,) = compare(self.profile, frame[[cfg.column]], thresholds=thresholds)
        if self.calibrator is None or not drift.tested:
            finding = _feature_finding(drift, bool(drift.drifted), cfg.severity)
        else:
            floors = {cfg.column: cfg.effect_floor} if cfg.effect_floor is not None else None
            verdict = self.calibrator.verdict([drift], rows, fwer=cfg.fwer, effect_floors=floors)
            calibrated = verdict.details["features"].get(cfg.column)
            finding = _feature_finding(drift, bool(verdict.drift), cfg.severity, calibrated)
        return [Finding(SIGNAL, finding.name, finding.statistic, finding.threshold, finding.breached,
                        finding.severity, method=finding.method, p_value=finding.p_value,
                        details={**finding.details, "policy": cfg.policy})]


def _insufficient(column: str, note: str) -> Finding:
    return Finding(SIGNAL, column, None, None, False, details={"note": note, "insufficient": True})
