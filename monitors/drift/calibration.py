"""No-drift distributions of each feature's effect size, by resampling the reference itself.

A window of m rows is drawn from the reference (without replacement when m <= n/2, else with) and its
effect against the whole reference is computed, R times at once:

- numeric: the normalised Wasserstein distance. Draws are positions in the sorted reference, so the
  reference's CDF integral at each drawn value is a lookup and the distance costs O(m) per draw,
  whatever the reference's size (see stattests.segments_integral).
- categorical: the Jensen-Shannon distance of multivariate-hypergeometric (or multinomial) counts.

A drawn window is part of the reference, so its distance to it is smaller than an independent
window's: for statistics linear in the CDF difference the factor is exactly (n-m)/n against the rest
of the reference, and the rest-vs-window null is rescaled to window-vs-reference sample sizes by
the usual sqrt(1/m + 1/n) law. The same law moves a null between nearby window sizes, so nulls are
computed on a geometric grid of sizes (about 9% apart, capped at MAX_SIZE) and cached per grid size.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from monitors.drift.profile import ColumnProfile, clean, numeric_values
from monitors.drift.stattests import NUMERIC, segments_integral

if TYPE_CHECKING:
    import pandas as pd

GRID_STEPS_PER_DOUBLING = 8
MAX_SIZE = 4096
REFERENCE_DOUBT = 3.0  # the reference counts as n/3 rows when sizing its own sampling error (see scale)
CHUNK_CELLS = 1 << 21  # draws x window rows per vectorised block: bounds memory to a few tens of MB


def grid_size(rows: int) -> int:
    """The grid window size whose null stands in for a window of `rows` rows."""
    if rows < 2:
        return 2
    step = round(math.log2(rows) * GRID_STEPS_PER_DOUBLING) / GRID_STEPS_PER_DOUBLING
    return int(min(max(2, round(2**step)), MAX_SIZE))


def with_replacement(size: int, reference_rows: int) -> bool:
    return size > reference_rows // 2


def scale(size: int, rows: int, reference_rows: int) -> float:
    """Factor taking a drawn-window null at `size` to an independent window of `rows` rows.

    The reference's own sampling error is a fixed offset for every check against it, and resampling
    the reference cannot see it; heavy-tailed columns make it large. Counting the reference as
    n / REFERENCE_DOUBT rows widens the null enough that no-drift checks stay under their false alarm
    target for the reference at hand, not just on average over references.
    """
    n = float(reference_rows)
    inside = (n + size) / n if with_replacement(size, reference_rows) else (n + size) / (n - size)
    moved = (1 / max(rows, 1) + REFERENCE_DOUBT / n) / (1 / size + 1 / n)
    return math.sqrt(inside * moved)


def simulate(col: ColumnProfile, size: int, draws: int, rng: np.random.Generator,
             order: np.ndarray | None = None) -> np.ndarray:
    """`draws` effect sizes of `size`-row windows drawn from the reference, against the reference.

    With `order` (see reference_order) windows are contiguous runs of the reference's rows, so the
    null carries its day-to-day variation (seasonality, autocorrelation); else they are random rows.
    """
    contiguous = order is not None and not with_replacement(size, col.rows)
    if col.kind == NUMERIC:
        return _numeric(col, size, draws, rng, order if contiguous else None)
    return _categorical(col, size, draws, rng, order if contiguous else None)


def reference_order(col: ColumnProfile, series: pd.Series) -> np.ndarray:
    """The reference's rows in their original order, as positions in the profile's sorted values
    (numeric) or as category codes (categorical)."""
    import pandas as pd

    if col.kind == NUMERIC:
        values = numeric_values(series)
        order = np.empty(values.size, dtype=np.int64)
        order[np.argsort(values, kind="stable")] = np.arange(values.size)
    else:
        order = pd.Categorical(clean(series), categories=pd.Index(list(col.categories))).codes.astype(np.int64)
    if order.size != col.rows or (order < 0).any():
        raise ValueError(f"column {col.name!r}: the reference frame is not the one the profile was built from")
    return order


def _numeric(col: ColumnProfile, size: int, draws: int, rng: np.random.Generator,
             order: np.ndarray | None) -> np.ndarray:
    a, prefix, n = col.values, col.prefix, col.rows
    norm = max(col.std, 0.001)
    out = np.empty(draws)
    block = max(1, CHUNK_CELLS // size)
    for start in range(0, draws, block):
        count = min(block, draws - start)
        drawn = _runs(order, size, count, rng) if order is not None else _positions(n, size, count, rng)
        positions = np.sort(drawn, axis=1)
        b = a[positions]
        at_b = prefix[positions]  # a drawn value equals the reference value it was drawn from
        tail = (a[-1] - b[:, -1]) - (prefix[-1] - at_b[:, -1])
        out[start:start + count] = (at_b[:, 0] + segments_integral(a, prefix, b, at_b) + tail) / norm
    return out


def _positions(n: int, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    if with_replacement(size, n):
        return rng.integers(0, n, size=(count, size))
    return np.stack([rng.choice(n, size, replace=False, shuffle=False) for _ in range(count)])


def _runs(order: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    starts = rng.integers(0, order.size - size + 1, size=count)
    return order[starts[:, None] + np.arange(size)]


def _categorical(col: ColumnProfile, size: int, draws: int, rng: np.random.Generator,
                 order: np.ndarray | None) -> np.ndarray:
    from scipy.special import rel_entr

    counts, k = col.counts, len(col.categories)
    if order is not None:
        block = max(1, CHUNK_CELLS // size)
        drawn = np.concatenate([_run_counts(order, size, min(block, draws - i), k, rng)
                                for i in range(0, draws, block)])
    elif with_replacement(size, col.rows):
        drawn = rng.multinomial(size, counts / counts.sum(), size=draws)
    else:
        drawn = rng.multivariate_hypergeometric(counts, size, size=draws)
    p = counts / counts.sum()
    q = drawn / size
    mid = (p + q) / 2.0
    js = rel_entr(p, mid).sum(axis=1) + rel_entr(q, mid).sum(axis=1)
    return np.sqrt(js / 2.0)


def _run_counts(order: np.ndarray, size: int, count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    codes = _runs(order, size, count, rng) + (np.arange(count) * k)[:, None]
    return np.bincount(codes.ravel(), minlength=count * k).reshape(count, k)
