"""Two-sample statistics on sentence embeddings: a domain classifier (default) and MMD.

The domain classifier is the detector Rabanser et al. ("Failing Loudly", 2019) found strongest for
shift detection: train a classifier to tell window texts from reference texts; if it can, out of fold,
they differ. Its statistic is the out-of-fold AUC (0.5: indistinguishable). The classifier is ridge
regression on the embeddings, solved in closed form per fold: as good a separator as logistic regression
for this purpose, and cheap enough to fit a few hundred times for a calibrated null.

MMD is the kernel two-sample statistic (unbiased MMD^2, Gaussian kernel, bandwidth from the reference's
median pairwise distance; Gretton et al. 2012).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSIFIER, MMD = "classifier", "mmd"
METHODS = (CLASSIFIER, MMD)
FOLDS = 5
RIDGE = 1.0  # relative to the mean eigenvalue of the features' scatter: strong enough for small windows
MMD_ROWS = 600  # per side: the kernel matrix grows quadratically


@dataclass(frozen=True)
class Statistic:
    value: float
    scores: np.ndarray | None = None  # per current row: how window-like (out-of-fold), for the evidence


def classifier_auc(reference: np.ndarray, current: np.ndarray, rng: np.random.Generator,
                   folds: int = FOLDS) -> Statistic:
    """Out-of-fold AUC of a ridge classifier telling `current` rows (1) from `reference` rows (0)."""
    x = np.vstack([reference, current]).astype(np.float64)
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    fold = np.empty(len(y), dtype=np.int64)
    for label in (0, 1):  # stratified: every fold holds both sides
        where = np.flatnonzero(y == label)
        fold[where] = rng.permutation(np.arange(where.size) % folds)
    scores = np.empty(len(y))
    for k in range(folds):
        test = fold == k
        train = ~test
        mean = x[train].mean(axis=0)
        xt = x[train] - mean
        yt = y[train] - y[train].mean()
        scatter = xt.T @ xt
        penalty = RIDGE * np.trace(scatter) / scatter.shape[0]
        w = np.linalg.solve(scatter + penalty * np.eye(scatter.shape[0]), xt.T @ yt)
        scores[test] = (x[test] - mean) @ w
    return Statistic(auc(scores[y == 0], scores[y == 1]), scores[len(reference):])


def auc(negative: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[negative, positive])
    n0, n1 = negative.size, positive.size
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def bandwidth(reference: np.ndarray, rng: np.random.Generator, rows: int = 1000) -> float:
    """The median pairwise distance of (a sample of) the reference: the usual kernel width."""
    sample = reference[rng.choice(len(reference), min(rows, len(reference)), replace=False)]
    d2 = _sq_dist(sample, sample)
    upper = d2[np.triu_indices(len(sample), 1)]
    return float(np.sqrt(np.median(upper))) if upper.size else 1.0


def mmd2(reference: np.ndarray, current: np.ndarray, width: float, rng: np.random.Generator) -> Statistic:
    """Unbiased MMD^2 with a Gaussian kernel; the witness (how window-like each current row is) as scores."""
    ref = _at_most(reference, MMD_ROWS, rng)
    cur_rows = _at_most_rows(len(current), MMD_ROWS, rng)
    cur = current[cur_rows]
    gamma = 1.0 / (2.0 * width * width)
    kxx, kyy, kxy = (np.exp(-gamma * _sq_dist(a, b)) for a, b in ((ref, ref), (cur, cur), (ref, cur)))
    n, m = len(ref), len(cur)
    if n < 2 or m < 2:
        return Statistic(float("nan"))
    value = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
             - 2.0 * kxy.mean())
    witness = np.exp(-gamma * _sq_dist(current, cur)).mean(axis=1) - np.exp(
        -gamma * _sq_dist(current, ref)).mean(axis=1)
    return Statistic(float(value), witness)


def statistic(method: str, reference: np.ndarray, current: np.ndarray, rng: np.random.Generator,
              width: float = 1.0) -> Statistic:
    if method == CLASSIFIER:
        return classifier_auc(reference, current, rng)
    if method == MMD:
        return mmd2(reference, current, width, rng)
    raise ValueError(f"text drift method must be one of {METHODS}, got {method!r}")


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def _at_most(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    return x[_at_most_rows(len(x), rows, rng)]


def _at_most_rows(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= rows else np.sort(rng.choice(n, rows, replace=False))
