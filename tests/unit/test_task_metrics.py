"""The task kinds' metrics agree with scikit-learn's on the same answers."""
import numpy as np
import pytest
from sklearn import metrics as sk

from retrain.components._metrics import metrics
from retrain.components._models import Answers


def test_binary_multiclass_and_regression_metrics_equal_sklearns():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    binary = metrics("binary", y, Answers((p >= 0.5).astype(int), np.column_stack([1 - p, p]), [0, 1]))
    assert binary["auc"] == pytest.approx(sk.roc_auc_score(y, p))
    assert binary["log_loss"] == pytest.approx(sk.log_loss(y, p))
    assert binary["accuracy"] == pytest.approx(sk.accuracy_score(y, p >= 0.5))

    classes = ["bus", "car", "train"]
    truth = rng.choice(classes, 400)
    proba = rng.dirichlet([1, 1, 1], 400)
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    multi = metrics("multiclass", truth, Answers(labels, proba, classes))
    assert multi["macro_f1"] == pytest.approx(sk.f1_score(truth, labels, average="macro"))
    assert multi["log_loss"] == pytest.approx(sk.log_loss(truth, proba, labels=classes))
    assert multi["accuracy"] == pytest.approx(sk.accuracy_score(truth, labels))

    target, guess = rng.normal(10, 30, 300), rng.normal(10, 30, 300)
    reg = metrics("regression", target, Answers(guess, None, None))
    assert reg["mae"] == pytest.approx(sk.mean_absolute_error(target, guess))
    assert reg["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(target, guess)))


def test_a_metric_that_cannot_be_computed_is_none_not_a_made_up_number():
    one_class = metrics("binary", np.ones(10, int), Answers(np.ones(10, int), np.full((10, 2), 0.5), [0, 1]))
    assert one_class["auc"] is None and one_class["accuracy"] == 1.0
    labels_only = metrics("multiclass", np.array(["a", "b"]), Answers(np.array(["a", "a"]), None, None))
    assert labels_only["log_loss"] is None and labels_only["accuracy"] == 0.5
    # a class the model never saw counts as probability 0 (clipped), not skipped
    unseen = metrics("multiclass", np.array(["a", "z"]), Answers(np.array(["a", "a"]), np.array([[1.0], [1.0]]),
                                                                 ["a"]))
    assert unseen["log_loss"] == pytest.approx(-np.log(1e-15) / 2)
