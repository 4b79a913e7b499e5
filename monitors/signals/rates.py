"""What a rate (missing values, out-of-range values, unseen categories) looks like in no-problem windows.

A window's rate is judged against the rates of every contiguous run of the same number of rows in the
reference, in its time order, so the reference's own day-to-day variation (a weather station that is
down for a day, a category seen only one week) is part of what "normal" means. Each run is judged the
way a new window would be, against the rest of the reference: a value is out of range when it is outside
the range of the rows outside the run, a category is unseen when none of its rows are outside the run.
Every run is counted exactly, in O(n) per window size:

- row-local rates (missing, type errors): a cumulative sum;
- out of range: the run holds the k smallest values of the reference exactly when it covers their
  positions, an interval of starts that shrinks as k grows, so the count per start is a coverage count;
- unseen: the run holds all of a category's rows when it covers the span of their positions.

When the reference is too short for runs of the window's size (fewer than two windows' worth), the
null is the binomial law of the reference's rate (Good-Turing's estimate of the chance of a value never
seen before, for unseen categories and out-of-range values).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_RUNS = 2  # the reference must hold at least this many windows' worth of rows for runs


@dataclass(frozen=True)
class RateNull:
    """No-problem rates of one check at one window size: run rates, or a binomial law."""

    rates: np.ndarray | None  # sorted rates of every contiguous run; None: binomial
    base_rate: float  # the reference's own rate (leave-run-out ones: the mean run rate), or the binomial's p
    size: int

    @property
    def mode(self) -> str:
        return "runs" if self.rates is not None else "binomial"

    def p_value(self, rate: float, rows: int) -> float:
        """Chance that a no-problem window of `rows` rows shows a rate at least `rate`."""
        if self.rates is not None:
            exceed = self.rates.size - int(np.searchsorted(self.rates, rate - 1e-12, side="left"))
            return (1 + exceed) / (1 + self.rates.size)
        hits = round(rate * rows)
        return binom_sf(hits - 1, rows, self.base_rate) if hits > 0 else 1.0

    def quantile(self, q: float, rows: int) -> float:
        if self.rates is not None:
            return float(self.rates[int(q * (self.rates.size - 1))])
        return binom_ppf(q, rows, self.base_rate) / max(rows, 1)

    def describe(self, rate: float, rows: int) -> dict[str, Any]:
        return {"null": self.mode, "reference_rate": self.base_rate, "null_q99": self.quantile(0.99, rows),
                "p_value": self.p_value(rate, rows)}


def runs_fit(rows: int, size: int) -> bool:
    return size >= 1 and rows >= MIN_RUNS * size


def row_local(indicator: np.ndarray, size: int) -> RateNull:
    """Rates of a per-row indicator (1 = the row has the problem) over all runs of `size` rows."""
    indicator = np.asarray(indicator, dtype=np.int64)
    n = indicator.size
    if not runs_fit(n, size):
        return RateNull(None, float(indicator.mean()) if n else 0.0, size)
    cumulative = np.concatenate([[0], np.cumsum(indicator)])
    return _null(cumulative[size:] - cumulative[:-size], size, float(indicator.mean()))


def out_of_range(values: np.ndarray, size: int) -> RateNull:
    """Rates of values outside the range of the rest of the reference, over all runs of `size` rows.

    `values`: the reference column in time order as floats; NaN rows are never out of range.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    finite = np.flatnonzero(np.isfinite(values))
    if not runs_fit(n, size) or finite.size < 2:
        return RateNull(None, 2.0 / (finite.size + 1), size)  # a new value beyond n exchangeable ones
    order = finite[np.argsort(values[finite], kind="stable")]
    counts = _extremes(order, values[order], n, size) + _extremes(order[::-1], values[order[::-1]], n, size)
    # a run holding every finite value counts each once, not once per side
    cumulative = np.concatenate([[0], np.cumsum(np.isfinite(values))])
    return _null(np.minimum(counts, cumulative[size:] - cumulative[:-size]), size)


def unseen(codes: np.ndarray, size: int) -> RateNull:
    """Rates of rows whose category has no row outside the run, over all runs of `size` rows.

    `codes`: the reference column in time order as category codes (-1 for missing values).
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    present = np.flatnonzero(codes >= 0)
    if not runs_fit(n, size) or present.size == 0:
        singletons = int((np.bincount(codes[present]) == 1).sum()) if present.size else 0
        return RateNull(None, singletons / max(present.size, 1), size)  # Good-Turing: P(a new category)
    k = int(codes[present].max()) + 1
    first = np.full(k, n, dtype=np.int64)
    last = np.full(k, -1, dtype=np.int64)
    np.minimum.at(first, codes[present], present)
    np.maximum.at(last, codes[present], present)
    weight = np.bincount(codes[present], minlength=k)
    return _null(_coverage(last - size + 1, first, weight, n - size + 1), size)


def _extremes(order: np.ndarray, sorted_values: np.ndarray, n: int, size: int) -> np.ndarray:
    """Per run start: how many of its values lie strictly beyond every value outside it, on one side.

    `order`: positions of the finite values from the most extreme inwards. A run holds the k most
    extreme values when it covers positions min..max of the first k; those values are strictly beyond
    the rest only when the k-th differs from the (k+1)-th (ties are not outside).
    """
    lo = np.minimum.accumulate(order)
    hi = np.maximum.accumulate(order)
    fits = np.flatnonzero(hi - lo + 1 <= size)
    if fits.size == 0:
        return np.zeros(n - size + 1, dtype=np.int64)
    depth = int(fits[-1]) + 1  # spans only grow: the first k that fit are a prefix
    covered = _coverage(hi[:depth] - size + 1, lo[:depth], np.ones(depth, dtype=np.int64), n - size + 1)
    # covered[s] = the largest k whose k most extreme values all sit in run s; step back over ties
    strict = np.zeros(depth + 1, dtype=np.int64)  # strict[k] = largest j <= k with value j-1 != value j
    following = sorted_values[1: depth + 1]
    boundary = np.ones(depth, dtype=bool)
    boundary[: following.size] = sorted_values[: following.size] != following
    marks = np.where(boundary, np.arange(1, depth + 1), 0)
    strict[1:] = np.maximum.accumulate(marks)
    return strict[covered]


def _coverage(starts: np.ndarray, stops: np.ndarray, weight: np.ndarray, length: int) -> np.ndarray:
    """Sum of `weight` over the intervals [starts, stops] (clipped to [0, length)) covering each index."""
    lo, hi = np.clip(starts, 0, None), np.clip(stops, None, length - 1)
    keep = lo <= hi
    diff = np.zeros(length + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], weight[keep])
    np.add.at(diff, hi[keep] + 1, -weight[keep])
    return np.cumsum(diff[:-1])


def _null(counts: np.ndarray, size: int, base: float | None = None) -> RateNull:
    rates = np.sort(counts.astype(float) / size)
    return RateNull(rates, float(rates.mean()) if base is None else base, size)


# The binomial law from its probabilities near the mean, summed in NumPy: importing scipy.stats (or
# scipy.special) costs a check process 0.2-0.9 s, more than the rates themselves.
_SPAN = 40.0  # standard deviations either side: the mass beyond is below 1e-300


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p), as scipy.stats.binom.sf (to ~1e-8 relative)."""
    if k < 0:
        return 1.0
    if k >= n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    if k + 1 > n * p:  # right of the mean the terms only shrink: sum the tail itself
        return float(_pmf(k + 1, min(n, k + 1 + _reach(n, p)), n, p).sum())
    return float(max(0.0, 1.0 - _pmf(max(0, k - _reach(n, p)), k, n, p).sum()))


def binom_ppf(q: float, n: int, p: float) -> float:
    """The smallest k with P(X <= k) >= q, as scipy.stats.binom.ppf."""
    if p <= 0 or n <= 0:
        return 0.0
    if p >= 1:
        return float(n)
    lo = max(0, int(n * p) - _reach(n, p))
    cdf = np.cumsum(_pmf(lo, min(n, int(n * p) + _reach(n, p)), n, p))
    return float(min(n, lo + int(np.searchsorted(cdf, q * (1 - 1e-12), side="left"))))


def _reach(n: int, p: float) -> int:
    return int(_SPAN * math.sqrt(n * p * (1 - p))) + 50


def _pmf(lo: int, hi: int, n: int, p: float) -> np.ndarray:
    """P(X = k) for k in lo..hi: one log-gamma at `lo`, then the ratio of neighbours, cumulated."""
    log_odds = math.log(p) - math.log1p(-p)
    start = (math.lgamma(n + 1) - math.lgamma(lo + 1) - math.lgamma(n - lo + 1) + lo * math.log(p)
             + (n - lo) * math.log1p(-p))
    k = np.arange(lo, hi, dtype=float)
    steps = np.log(n - k) - np.log(k + 1) + log_odds
    return np.exp(start + np.concatenate(([0.0], np.cumsum(steps))))
