"""No-drift distributions of each feature's effect size, drawn from the reference itself, in bounded time.

A no-drift window of m rows is a sample of the reference; its effect against the whole reference is what
the verdict weighs a real window's effect against. Effects are computed from bin counts, never from the
window's values, so a null costs the same for 100 rows or 10 million and needs no sort:

- numeric (normalised Wasserstein): the reference's sorted values are cut into rank bins at fixed
  quantile levels (`levels`: MIDDLE_BINS even bins, halving down to single values in either tail, so
  the extremes that dominate heavy-tailed columns are exact). With alpha_j the window's CDF minus the
  reference's at edge j, W1 = sum_j |alpha_j| * weight_j, where weight_j sums the reference's gaps in
  the two bins around edge j, each weighted by its position in its bin: a window's rows within one bin
  are taken to be spread like the reference's there (`edge_weights`). Against exact resampling the
  null's quantiles agree within a few percent on normal, skewed, heavy-tailed, rounded and discrete
  columns (tests/unit/test_null_method.py; `python -m benchmarks.calibration` prints the comparison).
- categorical (Jensen-Shannon): the window's category counts.

Random windows are bootstrap samples: multinomial counts up to EXACT_DRAWS rows, Poisson counts above
(the size then varies by about 1/sqrt(m), which leaves the quantiles where they are). Every numeric column
shares the same levels, so the random null of all numeric columns is one matrix product.
Runs of the reference in time order (see verdict.Calibrator) come from per-column prefix counts at
RUN_BLOCKS evenly spaced row offsets, so a run costs one subtraction per bin whatever its length.

A drawn window is not independent of the reference: `scale` moves a drawn null to an independent window
of `rows` rows by the sqrt(1/m + 1/n) law, which also moves it between nearby sizes, so nulls are computed
on a geometric grid of sizes (about 9% apart) and cached per grid size.

Other signals can reuse this: `simulate(col, size, draws, rng)` gives one column's no-drift effects, and
`scale` the factor to a window of any size; verdict.Calibrator adds caching and the Holm-corrected verdict.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from monitors.drift.profile import ColumnProfile, clean, numeric_values
from monitors.drift.stattests import NUMERIC, js_distance

if TYPE_CHECKING:
    import pandas as pd

METHOD = "bins-3"  # part of every cache key: a change of method must not read nulls made by another
GRID_STEPS_PER_DOUBLING = 8
MAX_SIZE = 1 << 34  # sizes are not capped: a null costs the same at any size
MIDDLE_BINS = 256
EXACT_DRAWS = 512  # windows up to this many rows draw exact multinomial counts; larger ones Poisson counts
RUN_BLOCKS = 4096  # run starts and lengths are multiples of n / RUN_BLOCKS rows (every row when n is smaller)
# The reference counts as n/2 rows when sizing its own sampling error (see scale). With 2, no-drift windows of
# 500-2000 rows against 6000-row references alarm 0-0.5% of the time (four references, 500 checks each);
# 1.5 reaches 0.8% without the effect floors, too close to the 1% target (benchmarks.calibration).
REFERENCE_DOUBT = 2.0
CHUNK_CELLS = 1 << 21  # draws x rows per block when drawing rows one by one: bounds memory


def grid_size(rows: int) -> int:
    """The grid window size whose null stands in for a window of `rows` rows."""
    if rows < 2:
        return 2
    step = round(math.log2(rows) * GRID_STEPS_PER_DOUBLING) / GRID_STEPS_PER_DOUBLING
    return int(min(max(2, round(2**step)), MAX_SIZE))


def scale(size: float, rows: int, reference_rows: int, replace: bool = True) -> float:
    """Factor taking a null of `size`-row windows drawn from the reference to an independent window of `rows`.

    A bootstrap draw (`replace`) varies like an independent sample of the reference; a run of the reference
    (without replacement) sits closer to it, by (n - m) / n. The reference's own sampling error is a fixed
    offset for every check against it that resampling cannot see, and heavy-tailed columns make it large:
    counting the reference as n / REFERENCE_DOUBT rows widens the null enough that no-drift checks stay
    under their false alarm target for the reference at hand, not just on average over references.
    """
    n = float(reference_rows)
    inside = (n + size) / n if replace else (n + size) / (n - size)
    moved = (1 / max(rows, 1) + REFERENCE_DOUBT / n) / (1 / size + 1 / n)
    return math.sqrt(inside * moved)


def resize(size: int, rows: int, reference_rows: int) -> float:
    """Factor taking a null of independent `size`-row windows to `rows`-row windows (see scale)."""
    n = float(reference_rows)
    return math.sqrt((1 / max(rows, 1) + REFERENCE_DOUBT / n) / (1 / size + REFERENCE_DOUBT / n))


def levels(rows: int) -> np.ndarray:
    """Quantile levels of the rank-bin edges: every rank for a small reference, else MIDDLE_BINS even bins
    whose outer two are split in halves down to single values."""
    if rows <= 4 * MIDDLE_BINS:
        return np.arange(rows + 1) / max(rows, 1)
    tail = 1 / rows * 2.0 ** np.arange(math.ceil(math.log2(rows / MIDDLE_BINS)))
    middle = np.arange(1, MIDDLE_BINS) / MIDDLE_BINS
    return np.concatenate(([0.0], tail, middle, 1 - tail[::-1], [1.0]))


def edge_ranks(col: ColumnProfile, at: np.ndarray, snap: bool = False) -> np.ndarray:
    """The rank of each level in the column's sorted values; `snap` moves each to the start of its tie group,
    so that a bin holds whole tie groups (needed when rows are binned by value)."""
    n = col.rows
    ranks = np.minimum(np.round(at * n).astype(np.int64), n)
    if snap:  # inner levels are below 1 - 1/n, so their ranks are below n
        ranks[1:-1] = np.searchsorted(col.values, col.values[np.minimum(ranks[1:-1], n - 1)], side="left")
    return ranks


def edge_weights(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """weight_j (see the module docstring) for sorted `values` and bin edges at `ranks` (0 ... n).

    The integrand between ranks i and i + 1 (a gap of values[i+1] - values[i]) is alpha at rank i, which
    sits at t = (i + 1 - r_k) / (r_k+1 - r_k) between the edges of its bin; the gaps of a bin weighted by
    (i + 1) sum to M(hi) - M(lo) with M(i) = i * values[i] - sum(values[:i]), so one pass over the values
    (the sums between edges) is all it takes."""
    n = values.size
    at = np.minimum(ranks, n - 1)  # the last rank has no gap after it
    between = np.add.reduceat(values, at[:-1]) if n else np.zeros(at.size - 1)
    between[at[1:] == at[:-1]] = 0.0  # reduceat gives values[i] for an empty stretch, not 0
    if n and at[-2] < at[-1]:
        between[-1] -= values[-1]  # the last stretch runs to the end, one past at[-1] = n - 1
    below = np.concatenate(([0.0], np.cumsum(between)))  # sum(values[:at_j])
    moment = at * values[at] - below
    lo, hi = at[:-1], at[1:]
    width = values[hi] - values[lo]
    right = (moment[1:] - moment[:-1] - lo * width) / np.maximum(ranks[1:] - ranks[:-1], 1)
    weights = np.zeros(ranks.size)
    weights[:-1] += width - right
    weights[1:] += right
    return weights


def wasserstein_from_cdf(cdf: np.ndarray, at: np.ndarray, weights: np.ndarray, std: float) -> np.ndarray:
    """Normalised W1 of windows whose CDF at the edges is `cdf` (draws x edges) against the reference's `at`."""
    return np.abs(cdf - at) @ weights / max(std, 0.001)


def bootstrap_cdf(at: np.ndarray, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """CDFs at the levels `at` of `draws` bootstrap windows of about `size` rows (draws x edges)."""
    widths = np.diff(at)
    if size <= EXACT_DRAWS:
        counts = np.empty((draws, widths.size), dtype=np.int64)
        block = max(1, CHUNK_CELLS // size)
        for start in range(0, draws, block):
            count = min(block, draws - start)
            cells = np.searchsorted(at, rng.random((count, size)), side="right") - 1
            cells += (np.arange(count) * widths.size)[:, None]
            counts[start:start + count] = np.bincount(cells.ravel(), minlength=count * widths.size).reshape(count, -1)
    else:
        counts = rng.poisson(size * widths, size=(draws, widths.size))
    return _cdf(counts)


def _cdf(counts: np.ndarray) -> np.ndarray:
    cum = np.cumsum(counts, axis=1, dtype=np.float64)
    total = np.maximum(cum[:, -1:], 1.0)
    return np.concatenate((np.zeros((counts.shape[0], 1)), cum / total), axis=1)


def numeric_nulls(cols: list[ColumnProfile], size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap nulls of several numeric columns at once (draws x columns): one draw, one matrix product."""
    at = levels(max(c.rows for c in cols))
    weights = np.stack([edge_weights(c.values, edge_ranks(c, at)) / max(c.std, 0.001) for c in cols], axis=1)
    out = np.empty((draws, len(cols)))
    block = max(1, CHUNK_CELLS // at.size)
    for start in range(0, draws, block):
        count = min(block, draws - start)
        out[start:start + count] = np.abs(bootstrap_cdf(at, size, count, rng) - at) @ weights
    return out


def categorical_null(col: ColumnProfile, size: int, draws: int, rng: np.random.Generator,
                     counts: np.ndarray | None = None) -> np.ndarray:
    """Jensen-Shannon distances to the reference of bootstrap windows, or of the given window `counts`."""
    p = col.counts / col.counts.sum()
    if counts is None:
        counts = rng.multinomial(size, p, size=draws)
    return js_distance(p, counts)


def simulate(col: ColumnProfile, size: int, draws: int, rng: np.random.Generator,
             runs: Runs | None = None) -> np.ndarray:
    """`draws` no-drift effects of one column for windows of about `size` rows: bootstrap windows, or
    contiguous runs of the reference in time order when `runs` (see Runs) is given."""
    if runs is not None:
        return runs.simulate(size, draws, rng)
    if col.kind == NUMERIC:
        return numeric_nulls([col], size, draws, rng)[:, 0]
    return categorical_null(col, size, draws, rng)


def run_span(size: int, reference_rows: int) -> int:
    """Blocks of n / RUN_BLOCKS rows per run standing in for windows of about `size` rows."""
    blocks = min(reference_rows, RUN_BLOCKS)
    return int(min(blocks, max(1, round(size * blocks / reference_rows))))


def run_rows(size: int, reference_rows: int) -> float:
    """Mean rows of those runs (what `scale` takes as their size)."""
    return run_span(size, reference_rows) * reference_rows / min(reference_rows, RUN_BLOCKS)


class Runs:
    """One column of the reference in time order, as prefix bin counts at RUN_BLOCKS row offsets."""

    def __init__(self, col: ColumnProfile, series: pd.Series) -> None:
        import pandas as pd

        self.col = col
        if col.kind == NUMERIC:
            values = numeric_values(series)
            self.at_ranks = edge_ranks(col, levels(col.rows), snap=True)
            self.weights = edge_weights(col.values, self.at_ranks)
            codes = np.searchsorted(col.values[self.at_ranks[1:-1]], values, side="right") if values.size else values
            bins = self.at_ranks.size - 1
        else:
            codes = pd.Categorical(clean(series), categories=pd.Index(list(col.categories))).codes.astype(np.int64)
            bins = len(col.categories)
        if codes.size != col.rows or (codes < 0).any():
            raise ValueError(f"column {col.name!r}: the reference frame is not the one the profile was built from")
        n = codes.size
        self.blocks = min(n, RUN_BLOCKS)
        bounds = np.round(np.arange(self.blocks + 1) * (n / self.blocks)).astype(np.int64)
        block_of = np.repeat(np.arange(self.blocks, dtype=np.int64), np.diff(bounds))
        per_block = np.bincount(block_of * bins + codes, minlength=self.blocks * bins).reshape(self.blocks, bins)
        self.prefix = np.zeros((self.blocks + 1, bins), dtype=np.int64)
        np.cumsum(per_block, axis=0, out=self.prefix[1:])

    def simulate(self, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
        span = run_span(size, self.col.rows)
        out = np.empty(draws)
        block = max(1, CHUNK_CELLS // self.prefix.shape[1])
        for start in range(0, draws, block):
            count = min(block, draws - start)
            first = rng.integers(0, self.blocks - span + 1, size=count)
            counts = self.prefix[first + span] - self.prefix[first]
            if self.col.kind == NUMERIC:
                at = self.at_ranks / self.col.rows
                out[start:start + count] = wasserstein_from_cdf(_cdf(counts), at, self.weights, self.col.std)
            else:
                out[start:start + count] = categorical_null(self.col, 0, 0, rng, counts)
        return out
