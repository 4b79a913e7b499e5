"""Label-free performance (CBPE): the estimate follows realized performance under covariate shift."""
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.types import EndpointRef, TelemetryBatch, Window
from monitors.signals.estimated import EstimatedPerformanceEvaluator, expected_auc, realized

WINDOW = Window(datetime(2013, 4, 1, tzinfo=UTC), datetime(2013, 4, 2, tzinfo=UTC))


def population(n: int, spread: float, seed: int) -> pd.DataFrame:
    """A model whose score is a squashed (miscalibrated) version of the true probability; `spread` is how
    far apart the cases are, which is what moves AUC when the input mix shifts."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(0, spread, n)
    truth = 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"score": truth ** 2, "label": (rng.uniform(size=n) < truth).astype(int)})


def estimate(fitted, frame):
    (finding,) = fitted.evaluate(TelemetryBatch(EndpointRef("e"), WINDOW, frame.drop(columns="label")))
    return finding


def test_the_expected_auc_of_perfectly_separated_scores_is_one_and_of_coin_flips_a_half():
    score = np.linspace(0, 1, 101)
    assert expected_auc(score, (score > 0.5).astype(float)) == pytest.approx(1.0)
    assert expected_auc(score, np.full(101, 0.3)) == pytest.approx(0.5)
    tied = np.array([0.2, 0.2, 0.8, 0.8])
    assert expected_auc(tied, np.array([0.0, 1.0, 0.0, 1.0])) == pytest.approx(0.5)


def test_the_estimate_tracks_realized_auc_when_the_input_mix_shifts_without_labels():
    evaluator = EstimatedPerformanceEvaluator("score", "score", "label", "binary")
    fitted = evaluator.fit(population(5000, 2.0, 0))
    assert fitted.baseline == pytest.approx(realized("auc", *population(5000, 2.0, 0).to_numpy(float).T), abs=1e-12)
    for spread, seed in ((2.0, 1), (0.8, 2)):  # the same world, then harder cases: AUC falls
        window = population(3000, spread, seed)
        truth = realized("auc", window["score"].to_numpy(float), window["label"].to_numpy(float))
        found = estimate(fitted, window)
        assert abs(found.statistic - truth) < 3 * found.details["standard_error"] + 0.01
    assert not estimate(fitted, population(3000, 2.0, 3)).breached
    harder = estimate(fitted, population(3000, 0.8, 4))
    assert harder.breached and harder.statistic < harder.threshold
    assert harder.details["expected_confusion"]["tp"] > 0 and harder.details["method"] == "cbpe"


def test_without_a_scored_labelled_reference_or_a_score_the_estimate_says_why():
    evaluator = EstimatedPerformanceEvaluator("score", "score", "label", "binary")
    unlabelled = evaluator.fit(population(5000, 2.0, 0).drop(columns="label"))
    found = estimate(unlabelled, population(500, 2.0, 1))
    assert found.details["insufficient"] and "no scored and labelled rows" in found.details["note"]
    regression = EstimatedPerformanceEvaluator("pred", "value", "y", "regression").fit(pd.DataFrame())
    found = estimate(regression, population(500, 2.0, 1))
    assert found.details["insufficient"] and "binary classifier" in found.details["note"]
    few = estimate(evaluator.fit(population(5000, 2.0, 0)), population(20, 2.0, 1))
    assert few.details["insufficient"] and "insufficient data" in few.details["note"]


def test_a_binary_monitor_spec_gets_a_label_free_estimate_not_an_insufficient_finding():
    """The shipped flights spec (label task `binary`) wires the estimate through build_suite: every check of
    a binary classifier carries it, before its labels arrive."""
    from monitors.signals.suite import build_suite
    from monitors.spec import load_spec

    spec = load_spec("monitors/examples/flights-delay.yaml")
    (evaluator,) = [e for e in build_suite(spec).current if isinstance(e, EstimatedPerformanceEvaluator)]
    found = estimate(evaluator.fit(population(5000, 2.0, 0)), population(3000, 0.8, 4))
    assert not found.details.get("insufficient"), found.details.get("note")
    assert found.statistic < found.details["baseline"] and found.details["method"] == "cbpe"
