"""The drift statistics, computed from sorted values or category counts, equal to evidently 0.7's.

Each function mirrors one `evidently.legacy.calculations.stattests` module; where evidently's result
depends on a detail (bin edges from the current data, zero-filling, summation of the union of keys),
the detail is reproduced, not improved. Inputs are already cleaned (NaN and +-inf dropped), as
evidently's `get_one_column_drift` does before it calls a test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

NUMERIC, CATEGORICAL = "numeric", "categorical"
KS_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp's default switches to the asymptotic p-value above this


@dataclass(frozen=True)
class Counts:
    """Category counts of reference and current over the union of their values (reference first)."""

    keys: list[Any]
    ref: np.ndarray
    cur: np.ndarray


@dataclass
class Pair:
    """One column's reference and current window, in the forms the tests need.

    Numeric columns carry sorted finite float64 values; categorical columns carry counts. Counts for a
    numeric column (evidently treats few-valued numerics as categories) are derived once, on demand.
    """

    kind: str
    ref_rows: int
    cur_rows: int
    ref_nunique: int
    ref_sorted: np.ndarray | None = None
    cur_sorted: np.ndarray | None = None
    ref_std: float = 0.0
    ref_prefix: Callable[[], np.ndarray] | None = None  # gives cdf_integral(ref_sorted), kept by the profile
    integer: bool = False  # both sides integer-typed: numpy's sturges width is clamped to >= 1
    counts_: Counts | None = field(default=None, repr=False)

    def counts(self) -> Counts:
        if self.counts_ is None:
            self.counts_ = _value_counts(self.ref_sorted, self.cur_sorted)
        return self.counts_

    def union_nunique(self) -> int:
        return len(self.counts().keys)


def run_lengths(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values and their counts of a sorted array, in one linear pass."""
    if sorted_values.size == 0:
        return sorted_values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    counts = np.diff(np.append(starts, sorted_values.size))
    return sorted_values[starts], counts


def _value_counts(ref: np.ndarray, cur: np.ndarray) -> Counts:
    ref_keys, ref_counts = run_lengths(ref)
    cur_keys, cur_counts = run_lengths(cur)
    keys = np.union1d(ref_keys, cur_keys)
    ref_full = np.zeros(keys.size, dtype=np.int64)
    cur_full = np.zeros(keys.size, dtype=np.int64)
    ref_full[np.searchsorted(keys, ref_keys)] = ref_counts
    cur_full[np.searchsorted(keys, cur_keys)] = cur_counts
    return Counts(keys.tolist(), ref_full, cur_full)


# --- numeric, from sorted values -------------------------------------------------------------------

def wasserstein_norm(pair: Pair) -> tuple[float, None]:
    """scipy's first Wasserstein distance divided by max(std(reference), 0.001), as evidently does."""
    prefix = pair.ref_prefix() if pair.ref_prefix is not None else None
    return wasserstein(pair.ref_sorted, pair.cur_sorted, prefix) / max(pair.ref_std, 0.001), None


def cdf_integral(a: np.ndarray) -> np.ndarray:
    """P[k] = integral of the reference's CDF from a[0] to a[k] (a sorted); equal across a tie group."""
    return np.concatenate(([0.0], np.cumsum(np.arange(1, a.size) / a.size * np.diff(a))))


def wasserstein(a: np.ndarray, b: np.ndarray, prefix: np.ndarray | None = None) -> float:
    """W1 = integral of |F_a - F_b| for sorted samples, in O(m log n) given the reference's CDF integral.

    Between consecutive current values F_b is a constant c = j/m, and the integral of |F_a - c| there
    splits at the first reference value whose rank reaches c (index ceil(j*n/m) - 1, pure arithmetic),
    so each segment costs a few lookups in the prefix integral: the reference is never scanned.
    """
    n, m = a.size, b.size
    if n == m:
        return float(np.mean(np.abs(a - b)))
    prefix = cdf_integral(a) if prefix is None else prefix
    k = np.searchsorted(a, b, side="right") - 1
    at_b = np.where(k >= 0, prefix[np.maximum(k, 0)] + (k + 1) / n * (b - a[np.maximum(k, 0)]), 0.0)
    end = max(a[-1], b[-1])
    at_end = prefix[-1] + (end - a[-1])
    inner = segments_integral(a, prefix, b, at_b)
    return float(at_b[0] + inner + (end - b[-1]) - (at_end - at_b[-1]))


def segments_integral(a: np.ndarray, prefix: np.ndarray, b: np.ndarray, at_b: np.ndarray) -> np.ndarray:
    """Sum over j of the integral of |F_a - (j+1)/m| on [b_j, b_j+1), along b's last axis (1-D or 2-D)."""
    n, m = a.size, b.shape[-1]
    steps = np.arange(1, m, dtype=np.float64)
    # ceil(j*n/m) in float64 is exact: j*n < 2**53 and a non-integer quotient is >= 1/m from one
    cross = -np.floor(-(steps * n) / m).astype(np.int64) - 1
    level = steps / m
    lo, hi, at_lo, at_hi = b[..., :-1], b[..., 1:], at_b[..., :-1], at_b[..., 1:]
    x = np.clip(a[cross], lo, hi)
    at_x = np.where(a[cross] <= lo, at_lo, np.where(a[cross] >= hi, at_hi, prefix[cross]))
    parts = level * (x - lo) - (at_x - at_lo) + (at_hi - at_x) - level * (hi - x)
    return parts.sum(axis=-1)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided KS statistic, bit-identical to scipy's, evaluating the CDFs only around b's values.

    Between consecutive current values F_a - F_b only rises, so its maximum is a left limit at a current
    value and its minimum is at a current value; both are differences of the same integer counts scipy
    divides, so the floats agree exactly.
    """
    n, m = a.size, b.size
    first = np.concatenate(([True], b[1:] != b[:-1]))
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], m)  # rank of the last tie + 1: F_b at the value
    values = b[starts]
    left = np.searchsorted(a, values, side="left") / n - starts / m
    right = np.searchsorted(a, values, side="right") / n - ends / m
    max_s = max(float(left.max()), 0.0)
    min_s = float(np.clip(-right.min(), 0, 1))
    return max(min_s, max_s)


def ks(pair: Pair) -> tuple[float, float]:
    """p-value of scipy.stats.ks_2samp with its default method (exact up to 10,000 rows per side)."""
    from scipy import stats

    a, b = pair.ref_sorted, pair.cur_sorted
    if max(a.size, b.size) <= KS_EXACT_MAX_N:
        p = float(stats.ks_2samp(a, b).pvalue)
        return p, p
    d = ks_statistic(a, b)
    big, small = sorted([float(a.size), float(b.size)], reverse=True)
    en = big * small / (big + small)
    p = float(np.clip(stats.distributions.kstwo.sf(d, np.round(en)), 0, 1))
    return p, p


def cramer_von_mises(pair: Pair) -> tuple[float, float]:
    from monitors.drift.cvm import cvm_2samp_pvalue

    p = cvm_2samp_pvalue(pair.ref_sorted, pair.cur_sorted)
    return p, p


def sturges_edges(lo: float, hi: float, size: int, integer: bool) -> np.ndarray:
    """np.histogram_bin_edges(x, bins="sturges") from x's min, max and size, without x."""
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    width = (hi - lo) / (np.log2(size) + 1.0)
    if width:
        if integer and width < 1:
            width = 1
        bins = int(np.ceil((last - first) / width))
    else:
        bins = 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def histogram(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram(values, edges)[0] for sorted values (numpy's own array-bins algorithm)."""
    cum = np.concatenate((np.searchsorted(sorted_values, edges[:-1], "left"),
                          np.searchsorted(sorted_values, edges[-1:], "right")))
    return np.diff(cum)


# --- binned and categorical ------------------------------------------------------------------------

def binned_percents(pair: Pair, fill_zeroes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """evidently's get_binned_data: sturges bins over ref+cur for numerics with > 20 unique, else values."""
    if pair.kind == NUMERIC and pair.ref_nunique > 20:
        a, b = pair.ref_sorted, pair.cur_sorted
        edges = sturges_edges(min(a[0], b[0]), max(a[-1], b[-1]), a.size + b.size, pair.integer)
        ref_p = histogram(a, edges) / a.size
        cur_p = histogram(b, edges) / b.size
    else:
        counts = pair.counts()
        ref_p = counts.ref / pair.ref_rows
        cur_p = counts.cur / pair.cur_rows
    if fill_zeroes:
        _fill_zeroes(ref_p)
        _fill_zeroes(cur_p)
    return ref_p, cur_p


def _fill_zeroes(percents: np.ndarray) -> None:
    smallest = min(percents[percents != 0])
    np.place(percents, percents == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)


def psi(pair: Pair) -> tuple[float, None]:
    ref_p, cur_p = binned_percents(pair)
    return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p))), None


def jensenshannon(pair: Pair) -> tuple[float, None]:
    ref_p, cur_p = binned_percents(pair, fill_zeroes=False)
    return float(js_distance(ref_p, cur_p)), None


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """scipy.spatial.distance.jensenshannon along the last axis, step for step, without importing scipy.spatial
    (a quarter of a second of a cold check)."""
    p = p / np.sum(p, axis=-1, keepdims=True)
    q = q / np.sum(q, axis=-1, keepdims=True)
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m), axis=-1) + np.sum(rel_entr(q, m), axis=-1)
    return np.sqrt(js / 2.0)


def rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scipy.special.rel_entr: x log(x/y), 0 where x == 0 and y >= 0, inf elsewhere."""
    x, y = np.broadcast_arrays(x, y)
    out = np.full(x.shape, np.inf)
    positive = (x > 0) & (y > 0)
    out[positive] = x[positive] * np.log(x[positive] / y[positive])
    out[(x == 0) & (y >= 0)] = 0.0
    return out


def kl_div(pair: Pair) -> tuple[float, None]:
    from scipy import stats

    ref_p, cur_p = binned_percents(pair)
    return float(stats.entropy(ref_p, cur_p)), None


def hellinger(pair: Pair) -> tuple[float, None]:
    if pair.kind == CATEGORICAL:
        counts = pair.counts()
        total = float(np.sum(np.sqrt((counts.ref / pair.ref_rows) * (counts.cur / pair.cur_rows))))
    else:
        keys = np.asarray(pair.counts().keys, dtype=np.int64 if pair.integer else np.float64)
        edges = np.histogram_bin_edges(keys, bins="sturges")  # integer keys: numpy clamps the width to >= 1
        width = (edges.max() - edges.min()) / (len(edges) - 1)
        h1, h2 = (_density(v, edges) for v in (pair.ref_sorted, pair.cur_sorted))
        total = float(np.sum(np.sqrt(h1 * h2) * width))
    return math.sqrt(1 - float(np.clip(total, 0, 1))), None


def _density(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = histogram(sorted_values, edges)
    return counts / np.diff(edges) / counts.sum()


def chisquare(pair: Pair) -> tuple[float, float]:
    from scipy import stats

    counts = pair.counts()
    k_norm = pair.cur_rows / pair.ref_rows
    with np.errstate(divide="ignore", invalid="ignore"):
        p = float(stats.chisquare(counts.cur, counts.ref * k_norm)[1])
    return p, p


def z_test(pair: Pair) -> tuple[float, float]:
    """Two-proportion z-test on 'is the smallest value' vs 'is not', as evidently's z_stattest."""
    from scipy.stats import norm

    counts = pair.counts()
    ref_present = [k for k, c in zip(counts.keys, counts.ref, strict=True) if c]
    cur_present = [k for k, c in zip(counts.keys, counts.cur, strict=True) if c]
    if len(ref_present) == 1 and len(cur_present) == 1 and ref_present[0] == cur_present[0]:
        return 1.0, 1.0
    first = counts.keys.index(sorted(counts.keys)[0])
    n1, n2 = pair.ref_rows, pair.cur_rows
    p1 = float(n1 - counts.ref[first]) / n1
    p2 = float(n2 - counts.cur[first]) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    p = float(2 * (1 - norm.cdf(np.abs(z))))
    return p, p
