"""The metrics of each task kind, computed the same way for evaluate, the gate's numbers and the backtest.

  binary      auc, log_loss, accuracy        (primary: auc)
  multiclass  macro_f1, log_loss, accuracy   (primary: macro_f1)
  regression  mae, rmse                      (primary: mae)
A metric that cannot be computed (AUC with one class in the labels, log loss of a model that answers
labels only) is None, never a made-up number.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where used: the gate reads the constants below on the Functions path
    import numpy as np

PRIMARY = {"binary": "auc", "multiclass": "macro_f1", "regression": "mae"}
METRICS = {"binary": ("auc", "log_loss", "accuracy"), "multiclass": ("macro_f1", "log_loss", "accuracy"),
           "regression": ("mae", "rmse")}
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
EPS = 1e-15


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def metrics(task: str, y: np.ndarray, answers: Any) -> dict[str, float | None]:
    """Every metric of `task` for true values `y` and a model's `answers` (_models.Answers), plus rows."""
    import numpy as np

    y = np.asarray(y)
    out: dict[str, float | None] = {"rows": float(len(y))}
    if len(y) == 0:
        return out | {name: None for name in METRICS[task]}
    if task == "regression":
        err = answers.labels.astype(float) - y.astype(float)
        return out | {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}
    labels = answers.labels
    out["accuracy"] = float(np.mean(_same(labels, y)))
    out["log_loss"] = _log_loss(y, answers.proba, answers.classes)
    if task == "binary":
        out["positives"] = float(np.sum(y.astype(int)))
        p = None if answers.proba is None else answers.proba[:, list(answers.classes).index(1)] \
            if 1 in answers.classes else None
        out["auc"] = auc(y.astype(int), p) if p is not None else None
    else:
        out["macro_f1"] = macro_f1(y, labels)
    return out


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC by average ranks (the Mann-Whitney form, equal to sklearn's roc_auc_score)."""
    from scipy.stats import rankdata

    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def macro_f1(y: np.ndarray, labels: np.ndarray) -> float:
    """F1 per class present in the truth or the predictions, averaged unweighted (sklearn's macro)."""
    import numpy as np

    truth, pred = np.asarray(y, dtype=object), np.asarray(labels, dtype=object)
    scores = []
    for cls in {*truth.tolist(), *pred.tolist()}:
        tp = float(np.sum((truth == cls) & (pred == cls)))
        fp = float(np.sum((truth != cls) & (pred == cls)))
        fn = float(np.sum((truth == cls) & (pred != cls)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _log_loss(y: np.ndarray, proba: np.ndarray | None, classes: list[Any] | None) -> float | None:
    import numpy as np

    if proba is None or not classes:
        return None
    index = {c: i for i, c in enumerate(classes)}
    rows = np.arange(len(y))
    cols = np.array([index.get(_plain(v), -1) for v in y])
    p = np.where(cols >= 0, proba[rows, np.maximum(cols, 0)], 0.0)  # a class the model never saw: p = 0
    total = proba.sum(axis=1)
    p = p / np.where(total > 0, total, 1.0)
    return float(-np.mean(np.log(np.clip(p, EPS, 1.0))))


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality of labels as Python values (1 == 1.0, "a" == "a"), whatever the dtypes."""
    import numpy as np

    return np.asarray(np.array(a.tolist(), dtype=object) == np.array(b.tolist(), dtype=object), dtype=bool)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
