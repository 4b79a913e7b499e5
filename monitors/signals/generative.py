"""Signals of generative (language-model) endpoints: their health and the quality of their answers.

`generation_health`, per window: tokens in and out per request, p95 latency, error rate (status >= 500),
refusal rate (finish_reason "content_filter", or a response that opens like a refusal), truncation rate
(finish_reason "length") and the estimated cost per 1,000 requests (token prices from the spec).
`answer_quality`, per window: the mean of each answer metric of `monitors.text.answers` (F1, ROUGE-L, BLEU, GLEU,
METEOR, semantic similarity where a ground truth is logged; LLM judges on a sample when a judge is configured).

Both decide the calibrated way: a window's value is compared with the same value over every contiguous run of
the same number of requests in the reference (its own variation is what "normal" means; a bootstrap when the
reference is short; beyond every run, the runs' normal tail) and breaches only when it is improbable there
(p <= alpha) and moved by at least an effect floor: a relative increase for tokens, latency and cost, an absolute
one for rates, an absolute drop (a share of the metric's scale) for answer scores. A limit set in the spec (a
service level or a budget) breaches on its own, beyond sampling noise for rates. Without the needed columns, or
with fewer than `min_rows` requests, the finding says so and never breaches.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from core.types import Finding, Severity, TelemetryBatch
from monitors.signals.rates import RateNull, binom_sf, row_local, runs_fit

HEALTH, QUALITY = "generation_health", "answer_quality"
REFUSALS = (r"i'?m sorry,? (but )?i (can(no|')t|am unable|won'?t)", r"i can(no|')t (help|assist|comply|provide)",
            r"i am unable to", r"as an ai( language model)?,? i", r"i must decline")
JUDGE_SCALE = 4.0  # azure-ai-evaluation's judges answer 1-5
BOOTSTRAP = 400


GENERATION_COLUMNS = ("tokens_in", "tokens_out", "finish_reason", "response")  # any one: a generation log


@dataclass(frozen=True)
class Measure:
    name: str
    values: np.ndarray  # per request, float; NaN where the request does not tell
    kind: str  # "mean" (relative floor) or "rate" (absolute floor, binomial test against a limit)
    limit: float | None = None
    statistic: str = "mean"  # how the window's values are summarised: mean, or p95


def run_null(values: np.ndarray, size: int, seed: int = 0) -> RateNull | None:
    """Means of `values` (NaN left out) over every contiguous run of `size`, or bootstrap means when short."""
    values = values[~np.isnan(values)]
    if values.size == 0 or size < 1:
        return None
    if runs_fit(values.size, size):
        cumulative = np.concatenate([[0.0], np.cumsum(values)])
        return RateNull(np.sort((cumulative[size:] - cumulative[:-size]) / size), float(values.mean()), size)
    rng = np.random.default_rng([seed, size])
    draws = rng.choice(values, size=(BOOTSTRAP, size), replace=True).mean(axis=1)
    return RateNull(np.sort(draws), float(values.mean()), size)


def judge_value(value: float, null: RateNull | None, rows: int, *, floor: float, relative: bool, alpha: float,
                lower_is_worse: bool = False) -> dict[str, Any]:
    """Whether `value` (a window mean) is beyond its no-problem null and the effect floor."""
    if null is None:
        return {"tested": False, "breached": False, "note": "the reference does not hold this value"}
    base = null.base_rate
    moved = (base - value) if lower_is_worse else (value - base)
    effect = moved / abs(base) if relative and base else moved
    runs = np.sort(-null.rates if lower_is_worse else null.rates)
    oriented = -value if lower_is_worse else value
    p_value = RateNull(runs, base, null.size).p_value(oriented, rows)
    if oriented > runs[-1] and runs.size > 2:  # beyond every run: the runs' normal tail (means are near normal)
        spread = float(runs.std(ddof=1))
        p_value = min(p_value, _normal_sf((oriented - float(runs.mean())) / spread) if spread > 0 else 0.0)
    return {"tested": True, "reference": base, "effect": float(effect), "floor": floor, "p_value": p_value,
            "alpha": alpha, "null": null.mode, "breached": bool(p_value <= alpha and effect >= floor)}


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class GenerationHealthEvaluator:
    price_in: float | None = None  # per 1,000 input tokens
    price_out: float | None = None  # per 1,000 output tokens
    max_cost_per_1k_requests: float | None = None
    max_tokens_per_request: float | None = None
    max_refusal_rate: float | None = None
    max_p95_latency_ms: float | None = None
    min_increase: float = 0.25  # tokens, latency, cost: +25% over the reference before it breaches
    min_rate_increase: float = 0.02  # refusals, truncations, errors: +2 points
    alpha: float = 0.001
    min_rows: int = 30
    refusal_patterns: tuple[str, ...] = REFUSALS
    severity: Severity = Severity.WARNING
    name: str = HEALTH

    def measures(self, frame: Any) -> list[Measure]:
        import pandas as pd

        def column(name: str) -> np.ndarray:
            if name not in frame:
                return np.full(len(frame), np.nan)
            return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)

        tokens_in, tokens_out = column("tokens_in"), column("tokens_out")
        finish = frame["finish_reason"] if "finish_reason" in frame else pd.Series([None] * len(frame))
        told = finish.notna().to_numpy() | (frame["response"].notna().to_numpy() if "response" in frame else False)
        refused = self._refused(frame, finish)
        out = [Measure("tokens_in_per_request", tokens_in, "mean"),
               Measure("tokens_out_per_request", tokens_out, "mean", self.max_tokens_per_request),
               Measure("p95_latency_ms", column("latency_ms"), "mean", self.max_p95_latency_ms, "p95"),
               Measure("error_rate", (column("status_code") >= 500).astype(float), "rate"),
               Measure("refusal_rate", np.where(told, refused, np.nan), "rate", self.max_refusal_rate),
               Measure("truncation_rate", np.where(finish.notna(), (finish == "length").to_numpy(), np.nan), "rate")]
        if self.price_in is not None or self.price_out is not None:
            cost = (np.nan_to_num(tokens_in) * (self.price_in or 0.0) + np.nan_to_num(tokens_out) * (
                self.price_out or 0.0))  # per request, in thousands of tokens x price per 1k = per 1k requests
            known = ~(np.isnan(tokens_in) & np.isnan(tokens_out))
            out.append(Measure("cost_per_1k_requests", np.where(known, cost, np.nan), "mean",
                               self.max_cost_per_1k_requests))
        return out

    def _refused(self, frame: Any, finish: Any) -> np.ndarray:
        pattern = re.compile("|".join(f"(?:{p})" for p in self.refusal_patterns), re.IGNORECASE)
        filtered = (finish == "content_filter").to_numpy()
        if "response" not in frame:
            return filtered.astype(float)
        texts = frame["response"].tolist()
        opens = np.array([isinstance(t, str) and bool(pattern.search(t[:200])) for t in texts])
        return (filtered | opens).astype(float)

    def fit(self, reference: Any) -> "FittedGenerationHealth":
        has = reference is not None and any(c in reference for c in GENERATION_COLUMNS)
        return FittedGenerationHealth(self, {m.name: m.values for m in self.measures(reference)} if has else {})


@dataclass(frozen=True)
class FittedGenerationHealth:
    config: GenerationHealthEvaluator
    reference: Mapping[str, np.ndarray] = field(default_factory=dict)

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        frame, cfg = current.frame, self.config
        if not any(c in frame for c in GENERATION_COLUMNS):
            return []  # not a generative endpoint's window: nothing to say
        if len(frame) < cfg.min_rows:
            return [Finding(HEALTH, "requests", float(len(frame)), float(cfg.min_rows), False, details={
                "insufficient": True, "note": f"insufficient data: {len(frame)} requests, {cfg.min_rows} needed"})]
        return [self._finding(m) for m in cfg.measures(frame)]

    def _finding(self, m: Measure) -> Finding:
        cfg = self.config
        values = m.values[~np.isnan(m.values)]
        if values.size == 0:
            return Finding(HEALTH, m.name, None, m.limit, False, details={
                "insufficient": True, "note": f"no request in the window tells its {m.name.removesuffix('_rate')}"})
        value = float(np.percentile(values, 95)) if m.statistic == "p95" else float(values.mean())
        rate = m.kind == "rate"
        reference = self.reference.get(m.name)
        if m.statistic == "p95":  # a run's p95 has no running sum: the share above the reference's p95 instead
            verdict = self._p95(values, reference)
        else:
            null = None if reference is None else (row_local(np.nan_to_num(reference[~np.isnan(reference)]).astype(
                np.int64), values.size) if rate else run_null(reference, values.size))
            verdict = judge_value(value, null, values.size, floor=cfg.min_rate_increase if rate else cfg.min_increase,
                                  relative=not rate, alpha=cfg.alpha)
        over_limit = self._over_limit(m, value, values)
        breached = bool(verdict["breached"] or over_limit)
        return Finding(HEALTH, m.name, value, m.limit if m.limit is not None else verdict.get("floor"), breached,
                       cfg.severity if breached else Severity.INFO, method="calibrated", p_value=verdict.get(
                           "p_value"), details={**verdict, "breached": breached, "over_limit": over_limit,
                                                "requests": int(values.size), "limit": m.limit})

    def _p95(self, values: np.ndarray, reference: np.ndarray | None) -> dict[str, Any]:
        if reference is None or np.isnan(reference).all():
            return {"tested": False, "breached": False, "note": "the reference holds no latencies"}
        clean = reference[~np.isnan(reference)]
        limit = float(np.percentile(clean, 95))
        verdict = judge_value(float((values > limit).mean()), row_local((clean > limit).astype(np.int64),
                                                                        values.size), values.size,
                              floor=self.config.min_increase * 0.05, relative=False, alpha=self.config.alpha)
        # judged: the share of requests slower than the reference's p95 (5% in a window like the reference)
        return {**verdict, "reference": limit, "share_above_reference_p95": float((values > limit).mean()),
                "reference_share": verdict.get("reference")}

    def _over_limit(self, m: Measure, value: float, values: np.ndarray) -> bool:
        if m.limit is None or value <= m.limit:
            return False
        if m.kind != "rate":
            return True  # a budget or a service level: the window's own value is the fact
        hits = int(values.sum())
        return bool(binom_sf(hits - 1, values.size, m.limit) < self.config.alpha)


@dataclass(frozen=True)
class AnswerQualityEvaluator:
    metrics: tuple[str, ...] = ("f1", "similarity")
    min_drop: float = 0.05  # a share of the metric's scale (0-1 scores; 1-5 judges: 0.2 points)
    alpha: float = 0.001
    min_rows: int = 20
    judge: Any = None  # monitors.text.answers.JudgeSettings
    severity: Severity = Severity.WARNING
    name: str = QUALITY
    embedder: Any = None
    evaluators: Mapping[str, Any] | None = None  # tests: stand-ins for azure-ai-evaluation's classes

    def score(self, frame: Any, seed: int) -> Any:
        from monitors.text.answers import score_answers

        embedder = self.embedder
        if embedder is None and "similarity" in self.metrics:
            from monitors.text.embed import shared_embedder

            embedder = shared_embedder()
        return score_answers(frame, self.metrics, embedder=embedder, judge=self.judge, seed=seed,
                             evaluators=self.evaluators)

    def fit(self, reference: Any) -> "FittedAnswerQuality":
        if reference is None or "response" not in reference:
            return FittedAnswerQuality(self, None)
        return FittedAnswerQuality(self, self.score(reference, seed=1))


@dataclass(frozen=True)
class FittedAnswerQuality:
    config: AnswerQualityEvaluator
    reference: Any  # monitors.text.answers.Scored of the reference rows, in time order, or None

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        frame, cfg = current.frame, self.config
        if "response" not in frame:
            return []
        answered = frame[frame["response"].notna()].reset_index(drop=True)
        if len(answered) < cfg.min_rows:
            return [Finding(QUALITY, "answers", float(len(answered)), float(cfg.min_rows), False, details={
                "insufficient": True, "note": f"insufficient data: {len(answered)} answers, {cfg.min_rows} needed"})]
        scored = cfg.score(answered, seed=0)
        return [self._finding(metric, values, scored) for metric, values in scored.scores.items()]

    def _finding(self, metric: str, values: np.ndarray, scored: Any) -> Finding:
        from monitors.text.answers import JUDGED

        cfg = self.config
        done = values[~np.isnan(values)]
        skipped = dict(scored.not_evaluated.get(metric, {}))
        if done.size < max(1, cfg.min_rows // 4):
            return Finding(QUALITY, metric, None, None, False, details={
                "insufficient": True, "evaluated": int(done.size), "not_evaluated": skipped,
                "note": f"{done.size} answers evaluated" + (f"; not evaluated: {skipped}" if skipped else "")})
        reference = None if self.reference is None else self.reference.scores.get(metric)
        floor = cfg.min_drop * (JUDGE_SCALE if metric in JUDGED else 1.0)
        value = float(done.mean())
        verdict = judge_value(value, None if reference is None else run_null(reference, done.size), done.size,
                              floor=floor, relative=False, alpha=cfg.alpha, lower_is_worse=True)
        return Finding(QUALITY, metric, value, floor, verdict["breached"],
                       cfg.severity if verdict["breached"] else Severity.INFO, method="calibrated",
                       p_value=verdict.get("p_value"), details={
                           **verdict, "evaluated": int(done.size), "not_evaluated": skipped,
                           "judge_calls": scored.judge_calls, "judge_tokens": scored.judge_tokens})


def metric_names(metrics: Sequence[str]) -> tuple[str, ...]:
    from monitors.text.answers import JUDGED, LEXICAL, SIMILARITY

    known = {*LEXICAL, *JUDGED, SIMILARITY}
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown answer metrics {unknown}; known: {sorted(known)}")
    return tuple(metrics)
