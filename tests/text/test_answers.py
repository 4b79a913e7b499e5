"""Evaluators of generated answers on recorded answers; LLM judges against a local OpenAI-compatible server."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from monitors.text.answers import JudgeSettings, RateLimiter, score_answers

RECORDED = pd.DataFrame({
    "prompt": ["What is the capital of France?", "Who wrote Hamlet?", "How many legs has a spider?", "Hi"],
    "response": ["The capital of France is Paris.", "Hamlet was written by Charles Dickens.",
                 "Spiders have eight legs.",
                 None],
    "context": ["Paris is the capital and largest city of France.", "Hamlet is a tragedy by William Shakespeare.",
                "Spiders are arachnids with eight legs.", None],
    "ground_truth": ["Paris is the capital of France.", "William Shakespeare wrote Hamlet.", "Eight.", "Hello"],
})


def test_lexical_and_semantic_scores_on_recorded_answers(embedder):
    scored = score_answers(RECORDED, ("f1", "rouge", "similarity", "bleu"), embedder=embedder)
    f1, rouge, similarity = scored.scores["f1"], scored.scores["rouge"], scored.scores["similarity"]
    assert f1[0] > 0.7 and f1[1] < f1[0] and math.isnan(f1[3])  # the wrong author scores lower; no response: none
    assert rouge[0] > rouge[1] > 0
    assert similarity[0] > 0.8 and similarity[1] < similarity[0]
    assert scored.not_evaluated["f1"] == {"no response or ground truth": 1}
    summary = scored.summary()["metrics"]
    assert summary["f1"]["rows"] == 3 and summary["similarity"]["mean"] > 0.5
    # BLEU needs NLTK data (built by make, never downloaded): each row is scored or counted as not evaluated
    bleu = scored.summary()["metrics"]["bleu"]
    assert bleu["rows"] + sum(bleu["not_evaluated"].values()) == len(RECORDED)


def test_judges_send_their_prompts_to_the_configured_deployment_and_score(tmp_path):
    from openai_server import JudgeServer

    with JudgeServer(score=4) as server:
        judge = JudgeSettings(server.url, "judge-gpt", api_key="test-key", sample=1.0)
        scored = score_answers(RECORDED, ("coherence", "groundedness"), judge=judge, sleep=lambda s: None)
        requests = list(server.requests)
    assert list(scored.scores["coherence"][:3]) == [4.0, 4.0, 4.0] and math.isnan(scored.scores["coherence"][3])
    assert scored.not_evaluated["groundedness"] == {"no response or context": 1}
    assert len(requests) == 6 and scored.judge_calls == 6 and scored.judge_tokens == 6 * 320
    for request in requests:
        assert request["path"] == "/openai/deployments/judge-gpt/chat/completions?api-version=2024-10-21"
        assert request["headers"]["api-key"] == "test-key"
    prompts = [" ".join(m["content"] for m in r["body"]["messages"]) for r in requests]
    assert sum("The capital of France is Paris." in p for p in prompts) == 2  # the answer is what is judged
    assert any("Paris is the capital and largest city of France." in p for p in prompts)  # groundedness: context


def test_an_unparsable_judge_answer_is_not_evaluated_and_the_rest_are_scored():
    from openai_server import JudgeServer

    with JudgeServer(script=["garbage"]) as server:
        judge = JudgeSettings(server.url, "judge", api_key="k", sample=1.0)
        scored = score_answers(RECORDED.iloc[:3], ("fluency",), judge=judge, sleep=lambda s: None)
    reasons = scored.not_evaluated["fluency"]
    assert sum(v for k, v in reasons.items() if k.startswith("unparsable")) == 1 and math.isnan(
        scored.scores["fluency"][0])
    assert list(scored.scores["fluency"][1:]) == [4.0, 4.0]


def test_a_rate_limited_judge_is_retried_with_backoff_then_not_evaluated():
    from openai_server import JudgeServer

    waits: list[float] = []
    # rate limited beyond the per-call deadline (the SDK's own retries wait seconds), twice: then "not evaluated"
    with JudgeServer(script=["429"] * 40) as server:
        judge = JudgeSettings(server.url, "judge", api_key="k", sample=1.0, attempts=2, timeout_s=2.0)
        scored = score_answers(RECORDED.iloc[:1], ("fluency",), judge=judge, sleep=waits.append)
    assert scored.not_evaluated["fluency"] == {"judge unavailable (retried)": 1}
    assert math.isnan(scored.scores["fluency"][0]) and scored.judge_calls == 2
    assert waits == [1.0]  # our backoff between the two attempts


def test_a_judge_that_times_out_is_retried_then_not_evaluated():
    from openai_server import JudgeServer

    waits: list[float] = []
    with JudgeServer(delay=1.5) as server:  # answers, but after the per-call deadline
        judge = JudgeSettings(server.url, "judge", api_key="k", sample=1.0, attempts=3, timeout_s=0.3)
        scored = score_answers(RECORDED.iloc[:1], ("coherence",), judge=judge, sleep=waits.append)
    assert scored.not_evaluated["coherence"] == {"judge unavailable (retried)": 1}
    assert math.isnan(scored.scores["coherence"][0]) and scored.judge_calls == 3 and len(waits) == 2


def test_an_unavailable_judge_never_fails_the_check_its_window_is_not_evaluated():
    from openai_server import JudgeServer

    from core.types import EndpointRef, TelemetryBatch, Window
    from monitors.signals.generative import AnswerQualityEvaluator

    window = Window(pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
                    pd.Timestamp("2026-01-02", tz="UTC").to_pydatetime())
    frame = pd.concat([RECORDED.iloc[:2]] * 2, ignore_index=True)
    with JudgeServer(delay=1.5) as server:
        judge = JudgeSettings(server.url, "judge", api_key="k", sample=1.0, attempts=2, timeout_s=0.2,
                              calls_per_minute=6000)
        fitted = AnswerQualityEvaluator(metrics=("fluency",), judge=judge, min_rows=4).fit(None)
        (finding,) = fitted.evaluate(TelemetryBatch(EndpointRef("chat"), window, frame))
    assert finding.signal == "answer_quality" and finding.name == "fluency" and not finding.breached
    assert finding.details["insufficient"] is True
    assert finding.details["not_evaluated"] == {"judge unavailable (retried)": 4}


def test_sampling_and_the_cost_cap_bound_the_judge_calls():
    from openai_server import JudgeServer

    frame = pd.concat([RECORDED.iloc[:3]] * 10, ignore_index=True)
    with JudgeServer() as server:
        sampled = score_answers(frame, ("fluency",), judge=JudgeSettings(server.url, "j", api_key="k", sample=0.2),
                                sleep=lambda s: None)
        capped = score_answers(frame, ("fluency",), judge=JudgeSettings(server.url, "j", api_key="k", sample=1.0,
                                                                        max_calls=5), sleep=lambda s: None)
    assert sampled.judge_calls == 6 and sampled.not_evaluated["fluency"]["not sampled"] == 24
    assert capped.judge_calls == 5 and capped.not_evaluated["fluency"]["cost cap reached"] == 25
    assert np.count_nonzero(~np.isnan(capped.scores["fluency"])) == 5


def test_the_rate_limiter_spaces_calls():
    now, waits = [0.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(30, sleep=sleep, clock=lambda: now[0])
    for _ in range(3):
        limiter.wait()
    assert waits == [2.0, 2.0]
