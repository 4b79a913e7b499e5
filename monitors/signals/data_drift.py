"""Data drift as an Evaluator: the drift engine per feature plus a dataset-level verdict.

The reference profile comes from the on-disk ProfileCache (built once per reference fingerprint and
feature set); the calibrator caches its resampled null distributions beside it. Per-feature findings are
`breached` when the dataset policy counts that feature as drifted, so the alert policy sees one answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from core.plain import finite, plain
from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "data_drift"
DATASET = "dataset"


def reference_profile(reference, kinds: Mapping[str, str], methods: Mapping[str, str] | None,
                      profiles: Any = None, fingerprint: str = ""):
    """The cached profile (keyed by fingerprint, kinds and methods) or, without a cache, a fresh one.

    `reference`: the frame, or a function returning it (called only when the profile is not cached)."""
    from monitors.drift.profile import build_profile

    load = reference if callable(reference) else (lambda: reference)
    methods = dict(methods) if methods else None
    if profiles is not None and fingerprint:
        return profiles.get_or_build(fingerprint, load, dict(kinds), methods)
    return build_profile(load(), dict(kinds), methods=methods, fingerprint=fingerprint)


def frame_of(reference) -> Any:
    """The frame of a frame, or of a reference read on demand."""
    read = loader(reference)
    return read() if callable(read) else read


def loader(reference) -> Any:
    """A frame as is, or a reference read on demand (anything with `frame()`, e.g. monitors.cache.LazyReference)
    as the function that reads it."""
    frame = getattr(reference, "frame", None)
    return frame if callable(frame) else reference


@dataclass(frozen=True)
class DataDriftEvaluator:
    kinds: Mapping[str, str]
    methods: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    policy: str = "calibrated"  # calibrated | evidently
    fwer: float = 0.01
    effect_floors: Mapping[str, float] | None = None
    share: float = 0.5
    resamples: int = 200
    profiles: Any = None  # monitors.drift.profile.ProfileCache, or None to build in memory
    fingerprint: str = ""
    calibration_dir: Path | None = None
    keep_prefix: bool = True  # False for one check per process (the CLI): see monitors.drift.engine.compare
    severity: Severity = Severity.WARNING
    name: str = SIGNAL
    text_settings: Mapping[str, Any] = field(default_factory=dict)  # text column -> monitors.text.drift.TextSettings
    text_default: Any = None  # TextSettings for text columns not in text_settings
    embedder: Any = None  # None: the shared ONNX embedder (monitors.text.embed)
    descriptors: bool = True  # text descriptors as numeric drift features
    min_rows: int = 30

    def fit(self, reference) -> "FittedDataDrift":
        """`reference`: a frame, or a reference read only if its profile or nulls are not cached (see `loader`);
        text features need the frame itself (their descriptors are computed from it)."""
        text = None
        if "text" in self.kinds.values():  # the text stack is imported only for monitors with text features
            reference = frame_of(reference)
            text = self._fit_text(reference)
            reference = text.augment(reference)
        kinds_in = {c: k for c, k in self.kinds.items() if k != "text"}
        if text is not None:
            kinds_in.update(text.descriptor_kinds)
        columns = [c for c in kinds_in if c in reference.columns]
        kinds = {c: kinds_in[c] for c in columns}
        methods = {c: m for c, m in self.methods.items() if c in kinds}
        reference = loader(reference)
        profile = reference_profile(reference, kinds, methods, self.profiles, self.fingerprint)
        calibrator = None
        if self.policy == "calibrated":
            from monitors.drift.verdict import Calibrator

            cache_dir = self.calibration_dir
            if cache_dir is None and self.profiles is not None and getattr(self.profiles, "root", None):
                cache_dir = Path(self.profiles.root) / "calibration"
            calibrator = Calibrator(profile, reference, resamples=self.resamples, seed=0, cache_dir=cache_dir)
        return FittedDataDrift(self, profile, calibrator, tuple(columns), text)

    def _fit_text(self, reference):
        from monitors.signals.text_drift import fit_text_part
        from monitors.text.drift import TextSettings

        cache_dir = self.calibration_dir
        if cache_dir is None and self.profiles is not None and getattr(self.profiles, "root", None):
            cache_dir = Path(self.profiles.root) / "text"
        if cache_dir is None:  # the CLI: embeddings and nulls are content-addressed, a shared cache is safe
            from monitors.text.embed import default_model_dir

            cache_dir = default_model_dir().parent / "cache"
        return fit_text_part(self.kinds, reference, self.text_settings, default=self.text_default or TextSettings(),
                             embedder=self.embedder, cache_dir=cache_dir, describe=self.descriptors)


@dataclass(frozen=True)
class FittedDataDrift:
    config: DataDriftEvaluator
    profile: Any
    calibrator: Any
    columns: tuple[str, ...]
    text: Any = None  # monitors.signals.text_drift.FittedTextPart, for monitors with text features

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        from monitors.drift.engine import compare
        from monitors.drift.verdict import evidently_verdict

        cfg, frame = self.config, current.frame
        if self.text is not None and len(frame):
            frame = self.text.augment(frame)
        present = [c for c in self.columns if c in frame]
        texts = [c for c in (self.text.columns if self.text is not None else ()) if c in frame]
        if len(frame) < cfg.min_rows or not (present or texts):
            why = (f"insufficient data: {len(frame)} rows in the window, at least {cfg.min_rows} needed to judge"
                   if len(frame) < cfg.min_rows else "no monitored feature in the telemetry")
            return [Finding(SIGNAL, DATASET, None, None, False, details={"note": why, "insufficient": True})]
        thresholds = {c: t for c, t in cfg.thresholds.items() if c in present} or None
        # compare reads only the profiled columns: no copy of the window
        features = compare(self.profile, frame, thresholds=thresholds, keep_prefix=cfg.keep_prefix) if present else []
        fwer, text_fwer = self.text.budget(cfg.fwer, len(features)) if self.text is not None else (cfg.fwer, 0.0)
        if not features:  # a monitor of text features only
            from monitors.drift.verdict import DatasetVerdict

            verdict = DatasetVerdict(drift=False, drift_share=0.0, policy=cfg.policy, drifted_features=[])
        elif self.calibrator is not None:
            verdict = self.calibrator.verdict(features, len(frame), fwer=fwer, effect_floors=cfg.effect_floors)
        else:
            verdict = evidently_verdict(features, share=cfg.share)
        drifted = set(verdict.drifted_features)
        details = plain(verdict.details, default=str)
        found = self._feature_findings(features, drifted, details)
        if texts:
            text_found = self.text.evaluate(frame, text_fwer, cfg.severity, cfg.policy)
            found += text_found
            drifted |= {f.name for f in text_found if f.breached}
        tested = [f for f in found if f.statistic is not None]
        share, drift = float(verdict.drift_share), bool(verdict.drift)
        if texts:  # the verdict saw the tabular features only
            share = len(drifted) / len(tested) if tested else 0.0
            drift = bool(tested) and share >= cfg.share if verdict.policy == "evidently" else bool(drifted)
        found.append(Finding(SIGNAL, DATASET, share,
                             cfg.share if verdict.policy == "evidently" else None, drift,
                             cfg.severity if drift else Severity.INFO, method=verdict.policy,
                             details={"policy": verdict.policy, "drifted_features": sorted(drifted),
                                      "features": len(features) + len(texts), "rows": len(frame), "verdict": details,
                                      "fwer_split": {"tabular": fwer, "text": text_fwer} if texts else None,
                                      # no feature had a value to test: no data, not a clean window
                                      "insufficient": not tested}))
        return found


    def _feature_findings(self, features: list, drifted: set[str], details: dict) -> list[Finding]:
        per_feature = details.pop("features", {}) if isinstance(details.get("features"), dict) else {}
        return [_feature_finding(f, f.name in drifted, self.config.severity, per_feature.get(f.name))
                for f in features]

    def summary_spec(self) -> Any:
        """What a window's summary must hold for `evaluate_summary` (monitors.drift.summary.SummarySpec)."""
        from monitors.drift.summary import SummarySpec

        return SummarySpec.of(self.profile)

    def evaluate_summary(self, summary: Any, spec: Any) -> tuple[list[Finding], dict[str, float | None]]:
        """As `evaluate`, from the window's summary (monitors.drift.summary) instead of its rows; also each
        feature's bound on its statistic's difference from the exact engine (None: the method needs rows)."""
        from monitors.drift.summary import drift
        from monitors.drift.verdict import evidently_verdict

        cfg = self.config
        if self.text is not None:
            raise ValueError("text features need the window's rows: a summary cannot judge them")
        if summary.rows < cfg.min_rows:
            why = f"insufficient data: {summary.rows} rows in the window, at least {cfg.min_rows} needed to judge"
            return [Finding(SIGNAL, DATASET, None, None, False, details={"note": why, "insufficient": True})], {}
        thresholds = {c: t for c, t in cfg.thresholds.items() if c in self.profile.columns} or None
        features, bounds = drift(self.profile, spec, summary, thresholds=thresholds)
        if self.calibrator is not None:
            verdict = self.calibrator.verdict(features, summary.rows, fwer=cfg.fwer, effect_floors=cfg.effect_floors)
        else:
            verdict = evidently_verdict(features, share=cfg.share)
        details = plain(verdict.details, default=str)
        found = [replace(f, details={**f.details, "error_bound": bounds.get(f.name)})
                 for f in self._feature_findings(features, set(verdict.drifted_features), details)]
        drift_found = bool(verdict.drift)
        found.append(Finding(SIGNAL, DATASET, float(verdict.drift_share),
                             cfg.share if verdict.policy == "evidently" else None, drift_found,
                             cfg.severity if drift_found else Severity.INFO, method=verdict.policy,
                             details={"policy": verdict.policy, "drifted_features": sorted(verdict.drifted_features),
                                      "features": len(features), "rows": summary.rows, "verdict": details,
                                      "path": "summary",
                                      "insufficient": not any(f.statistic is not None for f in found)}))
        return found, bounds


def _feature_finding(fd: Any, breached: bool, severity: Severity, calibrated: Any = None) -> Finding:
    """One feature's numbers; `calibrated` is its entry in the calibrated verdict (null-based p-value, floor)."""
    details = {"kind": fd.kind, "effect": finite(fd.effect), "threshold_exceeded": bool(fd.drifted),
               "reference_rows": int(fd.reference_rows), "current_rows": int(fd.current_rows)}
    if getattr(fd, "note", None):
        details["note"] = fd.note
    if finite(fd.statistic) is None:
        details["insufficient"] = True  # untested (no values): says nothing about drift either way
    if calibrated:
        details["calibrated"] = calibrated
    return Finding(SIGNAL, fd.name, finite(fd.statistic), finite(fd.threshold), breached,
                   severity if breached else Severity.INFO, method=fd.method, p_value=finite(fd.p_value),
                   details=details)


def drift_summary(findings: list[Finding], signal: str = SIGNAL) -> dict[str, Any]:
    """Findings -> the CLI/report shape: dataset_drift, drift_share, policy, features[...].

    Each feature says whether it `drifted` (the policy's decision) and which numbers decided it: under
    `calibrated`, its effect against the floor and against the no-drift null (exceedance p-value, Holm
    significance); under `evidently`, evidently's statistic against its threshold. evidently's own
    numbers and per-column verdict are always given beside, labelled as evidently's.
    """
    dataset = next((f for f in findings if f.signal == signal and f.name == DATASET), None)
    features = [feature_summary(f) for f in findings if f.signal == signal and f.name != DATASET]
    policy = dataset.details.get("policy", dataset.method) if dataset else (
        features[0]["decided_by"] if features else None)
    if dataset is None and features:  # prediction drift: one column, no dataset finding
        return {"dataset_drift": any(f["drifted"] for f in features), "policy": policy, "features": features}
    return {"dataset_drift": bool(dataset and dataset.breached),
            "drift_share": dataset.statistic if dataset and dataset.statistic is not None else 0.0,
            "policy": policy, "features": features}


def feature_summary(f: Finding) -> dict[str, Any]:
    calibrated = f.details.get("calibrated")
    evidently = {"method": f.method, "statistic": f.statistic, "p_value": f.p_value, "threshold": f.threshold,
                 "drifted": f.details.get("threshold_exceeded")}
    decided = None
    if calibrated:
        decided = {"effect": calibrated.get("effect"), "effect_method": calibrated.get("effect_method"),
                   "floor": calibrated.get("floor"), "null_q99": calibrated.get("null_q99"),
                   "p_value": calibrated.get("p_value"), "significant": calibrated.get("significant")}
    return {"name": f.name, "kind": f.details.get("kind"), "drifted": f.breached,
            "decided_by": "calibrated" if calibrated else "evidently", "calibrated": decided, "evidently": evidently,
            **({"note": f.details["note"]} if f.details.get("note") else {})}
