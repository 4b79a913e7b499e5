"""Language-model endpoints: health (tokens, latency, errors, refusals, truncations, cost) and answer quality,
each window against the reference's own runs, through the suite a monitor spec builds."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.signals.suite import build_suite, fit_suite
from monitors.spec import parse_spec

WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
SPEC = """
name: support-bot
endpoint: {{name: support}}
model: {{name: support-llm}}
features: [{{name: prompt, kind: text}}]
reference: {{uri: ref.parquet}}
signals:
  data_drift: {{enabled: false}}
  data_quality: {{enabled: false}}
  health: {{enabled: false}}
  generation_health: {{price_per_1k_tokens_in: 0.15, price_per_1k_tokens_out: 0.6{extra}}}
{answers}
"""


def spec(extra: str = "", answers: str = ""):
    return parse_spec(SPEC.format(extra=extra, answers=answers))


def chats(n: int, seed: int, *, out_tokens: float = 120.0, refusals: float = 0.01, latency: float = 900.0,
          truncated: float = 0.02) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    finish = rng.choice(["stop", "length", "content_filter"], n, p=[1 - truncated - refusals / 2, truncated,
                                                                     refusals / 2])
    response = np.where(rng.random(n) < refusals / 2, "I'm sorry, but I can't help with that.", "Here is how.")
    return pd.DataFrame({"prompt": [f"question {i}" for i in range(n)], "response": response,
                         "tokens_in": rng.poisson(300, n).astype(float),
                         "tokens_out": rng.normal(out_tokens, 25, n).clip(1).round(),
                         "finish_reason": finish, "latency_ms": rng.gamma(9, latency / 9, n),
                         "status_code": np.where(rng.random(n) < 0.003, 500, 200)})


def evaluate(suite, frame: pd.DataFrame):
    fitted = fit_suite(suite, chats(2000, seed=1))
    found = [f for e in fitted.current for f in e.evaluate(TelemetryBatch(EndpointRef("support"), WINDOW, frame))]
    return {f.name: f for f in found if f.signal == "generation_health"}


def test_a_window_like_the_reference_breaches_nothing_and_reports_cost_per_thousand_requests():
    found = evaluate(build_suite(spec()), chats(200, seed=2))
    assert set(found) == {"tokens_in_per_request", "tokens_out_per_request", "p95_latency_ms", "error_rate",
                          "refusal_rate", "truncation_rate", "cost_per_1k_requests"}
    assert not any(f.breached for f in found.values()), {n: f.details for n, f in found.items() if f.breached}
    # 300 tokens in at 0.15 per 1k + 120 out at 0.6 per 1k = 0.117 per request: 117 per 1,000 requests
    assert found["cost_per_1k_requests"].statistic == pytest.approx(117, rel=0.05)


def test_longer_answers_more_refusals_and_a_budget_breach_are_each_found():
    frame = chats(200, seed=3, out_tokens=240.0, refusals=0.12)
    found = evaluate(build_suite(spec(", max_cost_per_1k_requests: 150")), frame)
    breached = {n for n, f in found.items() if f.breached}
    assert breached == {"tokens_out_per_request", "refusal_rate", "cost_per_1k_requests"}
    assert found["tokens_out_per_request"].details["effect"] > 0.8  # about twice the reference's 120
    assert found["cost_per_1k_requests"].details["over_limit"]


def test_small_and_non_generative_windows_say_so_and_never_breach():
    suite = build_suite(spec())
    few = evaluate(suite, chats(10, seed=4))
    assert list(few) == ["requests"] and few["requests"].details["insufficient"]
    assert evaluate(suite, pd.DataFrame({"x": np.arange(100.0), "latency_ms": 5.0, "status_code": 200})) == {}


def answered(n: int, seed: int, wrong: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truths = [f"the parcel ships from depot {i % 7} on day {i % 5}" for i in range(n)]
    responses = [("it will rain tomorrow in the hills" if rng.random() < wrong else f"it ships from depot {i % 7} "
                  f"on day {i % 5}") for i in range(n)]
    return pd.DataFrame({"prompt": ["when does it ship?"] * n, "response": responses, "ground_truth": truths})


def test_answer_quality_drops_are_judged_against_the_reference_runs():
    pytest.importorskip("azure.ai.evaluation")
    suite = build_suite(spec(answers="  answer_quality: {enabled: true, metrics: [f1, rouge]}"))
    fitted = fit_suite(suite, answered(400, seed=1, wrong=0.05))

    def quality(frame):
        found = [f for e in fitted.current for f in e.evaluate(TelemetryBatch(EndpointRef("support"), WINDOW, frame))]
        return {f.name: f for f in found if f.signal == "answer_quality"}

    same = quality(answered(80, seed=2, wrong=0.05))
    assert set(same) == {"f1", "rouge"} and not any(f.breached for f in same.values())
    worse = quality(answered(80, seed=3, wrong=0.4))
    assert all(f.breached for f in worse.values())
    assert worse["f1"].statistic < same["f1"].statistic - 0.2 and worse["f1"].details["p_value"] <= 0.001


def test_judge_metrics_need_a_judge_and_unknown_metrics_are_refused():
    with pytest.raises(ValidationFailed, match="need a judge"):
        spec(answers="  answer_quality: {enabled: true, metrics: [groundedness]}")
    with pytest.raises(ValidationFailed, match="unknown answer metrics"):
        spec(answers="  answer_quality: {enabled: true, metrics: [vibes]}")


def test_the_cli_reports_a_language_model_window_against_its_reference(tmp_path, capsys):
    import json

    from monitors.cli import main

    chats(1500, seed=1).to_parquet(tmp_path / "ref.parquet")
    chats(200, seed=5, latency=2500.0).to_parquet(tmp_path / "cur.parquet")
    code = main(["check", "--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet")])
    doc = json.loads(capsys.readouterr().out)
    health = {f["name"]: f for f in doc["generation_health"]}
    assert code == 0 and health["p95_latency_ms"]["breached"]
    assert health["p95_latency_ms"]["details"]["reference"] == pytest.approx(1500, rel=0.2)  # gamma(9, 100): ~1.5 s
    assert not health["tokens_out_per_request"]["breached"] and "cost_per_1k_requests" not in health  # no prices


def test_worse_answers_put_performance_at_risk_for_the_retrain_policy():
    from core.types import Finding
    from monitors.evidence import actionable, performance_evidence
    from retrain.policy import RetrainPolicy, performance_at_risk

    def finding(breached: bool) -> Finding:
        return Finding("answer_quality", "f1", 0.52, 0.05, breached, details={
            "tested": True, "reference": 0.83, "effect": 0.31, "p_value": 1e-6 if breached else 0.2})

    worse = [finding(True)]
    assert actionable(worse)
    decision = performance_at_risk(performance_evidence(worse), RetrainPolicy())
    assert decision.allowed and "answer quality f1 0.520 vs reference 0.830" in decision.reasons[0]
    calm = performance_at_risk(performance_evidence([finding(False)]), RetrainPolicy())
    assert not calm.allowed and "answer quality f1" in calm.reasons[0]
