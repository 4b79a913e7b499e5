"""The evaluators a monitor spec asks for, built and fitted together on its reference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ports import Evaluator, FittedEvaluator
from monitors.signals.data_drift import DataDriftEvaluator
from monitors.signals.estimated import EstimatedPerformanceEvaluator
from monitors.signals.health import HealthEvaluator
from monitors.signals.performance import PerformanceEvaluator
from monitors.signals.prediction import PredictionDriftEvaluator
from monitors.signals.quality import TELEMETRY_COLUMNS, DataQualityEvaluator

if TYPE_CHECKING:
    from monitors.spec import MonitorSpec


@dataclass(frozen=True)
class Suite:
    current: tuple[Evaluator, ...]  # evaluated on the check's window
    performance: Evaluator | None  # evaluated on the window shifted back by the label lag


@dataclass(frozen=True)
class FittedSuite:
    fingerprint: str
    current: tuple[FittedEvaluator, ...]
    performance: FittedEvaluator | None
    reference_rows: int
    snapshot: str | None = None  # the reference frame as the check saw it (monitors.check_report)


def build_suite(spec: "MonitorSpec", *, profiles: Any = None, fingerprint: str = "",
                calibration_dir: Path | None = None) -> Suite:
    sig, sev = spec.signals, spec.alert.severity_of
    evaluators: list[Evaluator] = []
    if sig.data_drift.enabled:
        evaluators.append(data_drift_evaluator(spec, profiles=profiles, fingerprint=fingerprint,
                                               calibration_dir=calibration_dir))
    if sig.prediction_drift.enabled and spec.prediction:
        p = sig.prediction_drift
        evaluators.append(PredictionDriftEvaluator(
            spec.prediction.column, spec.prediction.kind, p.method, p.threshold, profiles=profiles,
            fingerprint=fingerprint, severity=sev("prediction_drift"), policy=p.policy, fwer=p.fwer,
            effect_floor=p.effect_floor, resamples=sig.data_drift.resamples, min_rows=spec.window.min_rows,
            calibration_dir=calibration_dir))
    if sig.data_quality.enabled:
        evaluators.append(quality_evaluator(spec))
    if sig.estimated_performance.enabled and spec.prediction and spec.label:
        e = sig.estimated_performance
        evaluators.append(EstimatedPerformanceEvaluator(
            spec.prediction.column, spec.prediction.kind, spec.label.column, spec.label.task,
            e.metric or (sig.performance.metric if sig.performance.metric in ("auc", "accuracy") else None),
            e.max_drop, e.min_rows, severity=sev("estimated_performance")))
    if sig.health.enabled:
        h = sig.health
        evaluators.append(HealthEvaluator(h.max_error_rate, h.max_p95_latency_ms, severity=sev("health"),
                                          policy=h.policy, alpha=h.alpha, min_rows=spec.window.min_rows))
    evaluators.extend(generative_evaluators(spec))
    performance = None
    if sig.performance.enabled and spec.prediction and spec.label:
        p = sig.performance
        performance = PerformanceEvaluator(spec.prediction.column, spec.prediction.kind, spec.label.column,
                                           spec.label.task, p.metric, p.min, p.max, p.max_drop, p.min_labels,
                                           severity=sev("performance"))
    return Suite(tuple(evaluators), performance)


def data_drift_evaluator(spec: "MonitorSpec", *, profiles: Any = None, fingerprint: str = "",
                         calibration_dir: Path | None = None, keep_prefix: bool = True) -> DataDriftEvaluator:
    dd = spec.signals.data_drift
    tabular = [f for f in spec.features if f.kind != "text"]
    floors = {f.name: dd.effect_floor for f in tabular} if dd.effect_floor is not None else {}
    floors.update(dd.effect_floors)
    return DataDriftEvaluator(
        spec.kinds, methods={f.name: f.method for f in tabular if f.method},
        thresholds={f.name: f.threshold for f in tabular if f.threshold is not None},
        policy=dd.policy, fwer=dd.fwer, effect_floors=floors or None, share=dd.share, resamples=dd.resamples,
        profiles=profiles, fingerprint=fingerprint, calibration_dir=calibration_dir, keep_prefix=keep_prefix,
        severity=spec.alert.severity_of("data_drift"), min_rows=spec.window.min_rows,
        **text_options(spec))


def quality_evaluator(spec: "MonitorSpec", known: frozenset[str] = TELEMETRY_COLUMNS) -> DataQualityEvaluator:
    q = spec.signals.data_quality
    known = known | {c.column for c in (spec.prediction, spec.label) if c is not None}
    return DataQualityEvaluator(
        spec.kinds, q.max_missing_rate, q.max_type_error_rate, q.max_out_of_range_rate, q.max_unseen_rate,
        q.max_rejected_rate, q.allow_extra_columns, frozenset(known), severity=spec.alert.severity_of("data_quality"),
        policy=q.policy, fwer=q.fwer, effect_floor=q.effect_floor, min_rows=spec.window.min_rows)


def generative_evaluators(spec: "MonitorSpec") -> list[Evaluator]:
    """Health of a language-model endpoint (silent on other endpoints) and, when asked for, answer quality."""
    from monitors.signals.generative import AnswerQualityEvaluator, GenerationHealthEvaluator

    sig, out = spec.signals, []
    g = sig.generation_health
    if g.enabled:
        out.append(GenerationHealthEvaluator(
            g.price_per_1k_tokens_in, g.price_per_1k_tokens_out, g.max_cost_per_1k_requests, g.max_tokens_per_request,
            g.max_refusal_rate, g.max_p95_latency_ms, g.min_increase, g.min_rate_increase, g.alpha,
            spec.window.min_rows, severity=spec.alert.severity_of("generation_health")))
    a = sig.answer_quality
    if a.enabled:
        judge = None
        if a.judge is not None:
            from monitors.text.answers import JudgeSettings

            judge = JudgeSettings(**a.judge.model_dump())
        out.append(AnswerQualityEvaluator(tuple(a.metrics), a.min_drop, a.alpha, spec.window.min_rows, judge,
                                          severity=spec.alert.severity_of("answer_quality")))
    return out


def text_options(spec: "MonitorSpec") -> dict[str, Any]:
    """The text part of the data drift evaluator (monitors.text is imported only when a feature is text)."""
    texts = [f for f in spec.features if f.kind == "text"]
    if not texts:
        return {}
    from monitors.text.drift import TextSettings

    t = spec.signals.data_drift.text
    base = dict(method=t.method, effect_floor=t.effect_floor, resamples=t.resamples, max_rows=t.max_rows,
                max_reference_rows=t.max_reference_rows, topics=t.topics, examples=t.examples)
    per_column = {f.name: TextSettings(**{**base, **({"method": f.method} if f.method else {}),
                                          **({"effect_floor": f.threshold} if f.threshold is not None else {})})
                  for f in texts}
    return {"text_settings": per_column, "text_default": TextSettings(**base), "descriptors": t.descriptors}


def fit_suite(suite: Suite, reference, fingerprint: str = "") -> FittedSuite:
    return FittedSuite(fingerprint, tuple(e.fit(reference) for e in suite.current),
                       suite.performance.fit(reference) if suite.performance else None, len(reference))
