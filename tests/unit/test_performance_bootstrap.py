"""The bootstrap's closed-form metrics agree with sklearn's, ties included."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors.signals.performance import _fast_metric


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 400), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]))
def test_auc_log_loss_accuracy_match_sklearn(n, seed, decimals):
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    score = np.round(rng.random(n), decimals).clip(0.001, 0.999)  # rounding makes ties
    if truth.min() == truth.max():
        assert _fast_metric("auc")(truth, score) is None
        return
    assert _fast_metric("auc")(truth, score) == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    assert _fast_metric("log_loss")(truth, score) == pytest.approx(log_loss(truth, score), abs=1e-12)
    assert _fast_metric("accuracy")(truth, score) == pytest.approx(accuracy_score(truth, score >= 0.5))
