"""Scores of generated answers, with the evaluators of `azure-ai-evaluation`.

Lexical scores (F1, BLEU, GLEU, ROUGE-L, METEOR) need a ground truth; semantic similarity is the cosine of
the response's and the ground truth's embeddings (the drift checks' model). The LLM-judge scores
(groundedness, relevance, coherence, fluency) run only when a judge deployment is configured, on a seeded
sample of rows, at most `calls_per_minute`, and stop at `max_calls` or `max_tokens` per check (the cost
cap). A judge that times out or rate-limits is retried with backoff (core.retry); after the last attempt,
or when its answer does not parse, that row's score is "not evaluated" with the reason counted, never a
failed check.
"""
from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from core.errors import RetryableError
from core.retry import retry_transient

# metric -> (azure.ai.evaluation class, result key, inputs it needs)
LEXICAL = {"f1": ("F1ScoreEvaluator", "f1_score"), "bleu": ("BleuScoreEvaluator", "bleu_score"),
           "gleu": ("GleuScoreEvaluator", "gleu_score"), "rouge": ("RougeScoreEvaluator", "rouge"),
           "meteor": ("MeteorScoreEvaluator", "meteor_score")}
JUDGED = {"groundedness": ("GroundednessEvaluator", "groundedness", ("response", "context")),
          "relevance": ("RelevanceEvaluator", "relevance", ("query", "response")),
          "coherence": ("CoherenceEvaluator", "coherence", ("query", "response")),
          "fluency": ("FluencyEvaluator", "fluency", ("response",))}
SIMILARITY = "similarity"
NLTK_METRICS = ("bleu", "gleu", "meteor")  # need NLTK data (monitors.text.nltk_data), never downloaded


@dataclass(frozen=True)
class JudgeSettings:
    endpoint: str  # https://<resource>.openai.azure.com (or a compatible server)
    deployment: str
    api_version: str = "2024-10-21"
    api_key: str | None = None  # None: Microsoft Entra ID through DefaultAzureCredential
    sample: float = 0.1  # share of rows judged
    calls_per_minute: float = 60.0
    max_calls: int = 200  # per check, per metric included
    max_tokens: int = 400_000  # per check: the cost cap
    attempts: int = 4
    timeout_s: float = 60.0

    def model_config(self) -> dict[str, Any]:
        config = {"azure_endpoint": self.endpoint, "azure_deployment": self.deployment,
                  "api_version": self.api_version}
        if self.api_key:
            config["api_key"] = self.api_key
        return config


@dataclass
class Scored:
    scores: dict[str, np.ndarray]  # metric -> per row (NaN: not evaluated)
    not_evaluated: dict[str, Counter] = field(default_factory=dict)  # metric -> reason -> rows
    judge_calls: int = 0
    judge_tokens: int = 0

    def summary(self) -> dict[str, Any]:
        out = {}
        for metric, values in self.scores.items():
            done = values[~np.isnan(values)]
            out[metric] = {"mean": float(done.mean()) if done.size else None, "rows": int(done.size),
                           "not_evaluated": dict(self.not_evaluated.get(metric, {}))}
        return {"metrics": out, "judge_calls": self.judge_calls, "judge_tokens": self.judge_tokens}


class RateLimiter:
    """At most `per_minute` calls per minute, spaced evenly (a sleep before a call that comes too soon)."""

    def __init__(self, per_minute: float, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gap, self.sleep, self.clock, self.next = 60.0 / per_minute, sleep, clock, 0.0

    def wait(self) -> None:
        now = self.clock()
        if now < self.next:
            self.sleep(self.next - now)
            now = self.next
        self.next = now + self.gap


class JudgeUnavailable(RetryableError):
    """The judge timed out, rate-limited or failed on its side: worth another try."""


def score_answers(frame, metrics: tuple[str, ...], *, embedder: Any = None, judge: JudgeSettings | None = None,
                  seed: int = 0, sleep: Callable[[float], None] = time.sleep,
                  evaluators: Mapping[str, Callable[..., dict]] | None = None) -> Scored:
    """Score each row of `frame` (columns prompt, response, context, ground_truth; missing ones are None)."""
    rows = _rows(frame)
    scored = Scored({m: np.full(len(rows), np.nan) for m in metrics})
    built = dict(evaluators or {})
    for metric in metrics:
        if metric == SIMILARITY:
            _similarity(rows, scored, embedder)
        elif metric in LEXICAL:
            _lexical(metric, rows, scored, built.get(metric))
        elif metric in JUDGED:
            continue
        else:
            raise ValueError(f"unknown answer metric {metric!r}: use {sorted([*LEXICAL, *JUDGED, SIMILARITY])}")
    judged = [m for m in metrics if m in JUDGED]
    if judged:
        _judge(judged, rows, scored, judge, seed, sleep, built)
    return scored


def _rows(frame) -> list[dict[str, str | None]]:
    columns = {"query": "prompt", "response": "response", "context": "context", "ground_truth": "ground_truth"}
    n = len(frame)
    out = [dict.fromkeys(columns) for _ in range(n)]
    for key, column in columns.items():
        if column in frame:
            for i, value in enumerate(frame[column].tolist()):
                out[i][key] = value if isinstance(value, str) and value.strip() else None
    return out


def _lexical(metric: str, rows: list[dict], scored: Scored, evaluator: Callable[..., dict] | None) -> None:
    reasons = scored.not_evaluated.setdefault(metric, Counter())
    if metric in NLTK_METRICS:
        from monitors.text.nltk_data import missing

        absent = missing()
        if absent:
            reasons[f"NLTK data missing: {', '.join(absent)} (python -m monitors.text nltk-data, or set NLTK_DATA; "
                    "never downloaded)"] += len(rows)
            return
    evaluator = evaluator or _build(metric)
    key = LEXICAL[metric][1]
    for i, row in enumerate(rows):
        if not row["response"] or not row["ground_truth"]:
            reasons["no response or ground truth"] += 1
            continue
        scored.scores[metric][i] = float(evaluator(response=row["response"], ground_truth=row["ground_truth"])[key])


def _similarity(rows: list[dict], scored: Scored, embedder: Any) -> None:
    reasons = scored.not_evaluated.setdefault(SIMILARITY, Counter())
    pairs = [i for i, r in enumerate(rows) if r["response"] and r["ground_truth"]]
    reasons["no response or ground truth"] += len(rows) - len(pairs)
    if not pairs:
        return
    if embedder is None:
        from monitors.text.embed import shared_embedder

        embedder = shared_embedder()
    a = embedder.encode([rows[i]["response"] for i in pairs]).vectors
    b = embedder.encode([rows[i]["ground_truth"] for i in pairs]).vectors
    scored.scores[SIMILARITY][pairs] = (a * b).sum(axis=1)


def _judge(metrics: list[str], rows: list[dict], scored: Scored, judge: JudgeSettings | None, seed: int,
           sleep: Callable[[float], None], built: dict[str, Callable[..., dict]]) -> None:
    if judge is None:
        for metric in metrics:
            scored.not_evaluated.setdefault(metric, Counter())["no judge configured"] += len(rows)
        return
    chosen = set(random.Random(seed).sample(range(len(rows)), k=math.ceil(judge.sample * len(rows))))
    limiter = RateLimiter(judge.calls_per_minute, sleep=sleep)
    for metric in metrics:
        evaluator = built.get(metric) or _build(metric, judge)
        name, key, needs = JUDGED[metric]
        reasons = scored.not_evaluated.setdefault(metric, Counter())
        for i, row in enumerate(rows):
            if i not in chosen:
                reasons["not sampled"] += 1
            elif any(not row[n] for n in needs):
                reasons[f"no {' or '.join(n for n in needs if not row[n])}"] += 1
            elif scored.judge_calls >= judge.max_calls or scored.judge_tokens >= judge.max_tokens:
                reasons["cost cap reached"] += 1
            else:
                limiter.wait()
                scored.scores[metric][i] = _judged(evaluator, key, {n: row[n] for n in needs}, judge, sleep,
                                                   scored, reasons)


def _judged(evaluator: Callable[..., dict], key: str, inputs: dict[str, str], judge: JudgeSettings,
            sleep: Callable[[float], None], scored: Scored, reasons: Counter) -> float:
    def call() -> dict:
        scored.judge_calls += 1
        try:
            return _within(judge.timeout_s, lambda: evaluator(**inputs))
        except Exception as exc:  # noqa: BLE001 - sorted into retryable or not below, never swallowed
            if _transient(exc):
                raise JudgeUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise

    try:
        result = retry_transient(call, on=(JudgeUnavailable,), attempts=judge.attempts, base=1.0, cap=30.0,
                                 sleep=sleep, what="LLM judge")
    except JudgeUnavailable:
        reasons["judge unavailable (retried)"] += 1
        return math.nan
    except (ValueError, KeyError, TypeError) as exc:  # the judge's answer did not parse
        reasons[f"unparsable judge answer ({type(exc).__name__})"] += 1
        return math.nan
    scored.judge_tokens += int((result.get(f"{key}_properties") or {}).get("total_tokens") or 0)
    value = result.get(key)
    if not isinstance(value, (int, float)) or math.isnan(float(value)):
        reasons["judge gave no score"] += 1
        return math.nan
    return float(value)


def _within(seconds: float, fn: Callable[[], dict]) -> dict:
    """`fn()` with a deadline. azure-ai-evaluation retries a rate-limited judge up to 10 times itself, waiting
    up to a minute between tries; the deadline bounds what one check waits (an abandoned call ends in the
    background, on a daemon thread)."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="llm-judge")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"the judge did not answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _transient(exc: BaseException) -> bool:
    """Rate limits, timeouts, connection failures and 5xx, however azure-ai-evaluation wraps them."""
    import openai

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                             openai.InternalServerError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _build(metric: str, judge: JudgeSettings | None = None) -> Callable[..., dict]:
    import azure.ai.evaluation as aie

    if metric in LEXICAL:
        cls = getattr(aie, LEXICAL[metric][0])
        return cls(rouge_type=aie.RougeType.ROUGE_L) if metric == "rouge" else cls()
    kwargs: dict[str, Any] = {}
    if judge is not None and not judge.api_key:
        from azure.identity import DefaultAzureCredential

        kwargs["credential"] = DefaultAzureCredential()
    return getattr(aie, JUDGED[metric][0])(judge.model_config(), **kwargs)
