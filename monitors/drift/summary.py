"""Mergeable window summaries: what a drift check needs from a window too big to hold, with error bounds.

A summary holds, per feature, counts that add up across chunks, partitions or queries:
- numeric: counts per bin of a grid fixed by the reference (GRID_BINS bins even in
  t = asinh((x - centre) / scale), narrow where the reference is dense and widening with |x| in the
  tails), rows below and above the reference's range, the exact min and max, and, for a feature with few
  distinct values in the reference (DISCRETE), the exact count of each value while there are few;
- categorical: the count of each value.
numpy (streamed Arrow batches, `add_frame`), Kusto (monitors.telemetry.kql.summary_query) and Spark
(monitors.drift.spark) compute the same bins, so summaries from any of them merge (`merge`).

Statistics come from a summary against the reference profile (which keeps the reference's sorted values),
each with a stated bound on its difference from the exact engine on the same rows (see `drift`):
- categorical methods, and numeric features whose distinct values were all counted: exact (bound 0);
- wasserstein: a bin's rows are taken to be spread like the reference's rows in that bin; the error is at
  most sum_j q_j * w_j / std (q_j the window's share in bin j, w_j the span of bin j its values can occupy,
  clipped by the window's min and max): F_w is exact at every edge and moves by at most q_j inside bin j;
- ks: at most max_j q_j, for the same reason; its p-value is the asymptotic one at the estimate;
- jensenshannon (numeric: evidently's sturges bins): rows of grid bins that straddle a sturges edge are
  split like the reference's; the distance moves by at most sqrt(ln 2 * s), s their share (the JS distance
  is a metric and JSD <= ln 2 * total variation);
- psi, kl_div, hellinger and cramer_von_mises on numeric features need the rows: reported as untested.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from monitors.drift import stattests as st
from monitors.drift.engine import FeatureDrift, effect, resolve_method
from monitors.drift.methods import METHODS
from monitors.drift.profile import ColumnProfile, ReferenceProfile
from monitors.drift.stattests import CATEGORICAL, NUMERIC, Counts, Pair

if TYPE_CHECKING:
    import pandas as pd

GRID_BINS = 8192
DISCRETE = 256  # numeric features whose reference has at most this many distinct values get exact value counts
EXACT_VALUES = 4096  # distinct values counted exactly per numeric column before giving up on exactness
BOUNDED = frozenset({"wasserstein", "ks", "jensenshannon"})


@dataclass(frozen=True)
class Grid:
    """Bin k of 1..bins holds t in [low + (k-1) step, low + k step); 0 and bins+1 hold the rest."""

    centre: float
    scale: float
    low: float
    step: float
    bins: int = GRID_BINS

    @classmethod
    def of(cls, col: ColumnProfile, bins: int = GRID_BINS) -> Grid:
        a = col.values
        centre = float(a[a.size // 2])
        scale = float(a[(3 * a.size) // 4] - a[a.size // 4]) / 2 or float(np.std(a)) or 1.0
        low, high = (math.asinh((float(v) - centre) / scale) for v in (a[0], a[-1]))
        return cls(centre, scale, low, (high - low) / bins or 1.0, bins)

    def index(self, values: np.ndarray) -> np.ndarray:
        y = (values - self.centre) / self.scale
        with np.errstate(over="ignore"):  # beyond 1e154 y*y is inf: the overflow bin, as it should be
            t = np.sign(y) * np.log(np.abs(y) + np.sqrt(y * y + 1.0))  # asinh, as Spark and Kusto compute it
        return np.clip(np.floor((t - self.low) / self.step) + 1, 0, self.bins + 1).astype(np.int64)

    def edges(self) -> np.ndarray:
        """x of the bins + 1 edges between bin 0 | 1 | ... | bins | bins + 1."""
        return self.centre + self.scale * np.sinh(self.low + self.step * np.arange(self.bins + 1))

    def to_json(self) -> dict[str, Any]:
        return {"centre": self.centre, "scale": self.scale, "low": self.low, "step": self.step, "bins": self.bins}


@dataclass
class NumericSummary:
    counts: np.ndarray  # bins + 2 counts (see Grid)
    low: float = math.inf  # the window's min and max
    high: float = -math.inf
    missing: int = 0
    values: dict[float, int] | None = field(default_factory=dict)  # exact counts while few

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


@dataclass
class CategoricalSummary:
    counts: dict[Any, int] = field(default_factory=dict)
    missing: int = 0

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


@dataclass
class WindowSummary:
    """Per-feature summaries of one window (or part of one: `merge` adds parts)."""

    columns: dict[str, NumericSummary | CategoricalSummary]
    rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SummarySpec:
    """What to summarise: a grid per numeric feature (exact values too, when the reference has few), and
    the categorical features. Built from the reference profile; plain JSON for Kusto and Spark jobs."""

    grids: dict[str, Grid]
    exact: frozenset[str]
    categorical: tuple[str, ...]

    @classmethod
    def of(cls, profile: ReferenceProfile) -> SummarySpec:
        numeric = [c for c in profile.columns.values() if c.kind == NUMERIC]
        return cls({c.name: Grid.of(c) for c in numeric}, frozenset(c.name for c in numeric
                                                                     if c.nunique <= DISCRETE),
                   tuple(c.name for c in profile.columns.values() if c.kind == CATEGORICAL))

    def empty(self) -> WindowSummary:
        columns: dict[str, Any] = {name: NumericSummary(np.zeros(g.bins + 2, dtype=np.int64),
                                                        values={} if name in self.exact else None)
                                   for name, g in self.grids.items()}
        columns.update({name: CategoricalSummary() for name in self.categorical})
        return WindowSummary(columns)

    def to_json(self) -> dict[str, Any]:
        return {"grids": {n: g.to_json() for n, g in self.grids.items()}, "exact": sorted(self.exact),
                "categorical": list(self.categorical)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SummarySpec:
        return cls({n: Grid(**g) for n, g in doc["grids"].items()}, frozenset(doc["exact"]),
                   tuple(doc["categorical"]))


def summary_to_json(summary: WindowSummary) -> dict[str, Any]:
    """Plain JSON: numeric counts as sparse [bin, count] pairs (a window fills few of the bins)."""
    columns: dict[str, Any] = {}
    for name, part in summary.columns.items():
        if isinstance(part, NumericSummary):
            nonzero = np.flatnonzero(part.counts)
            columns[name] = {"kind": NUMERIC, "bins": int(part.counts.size),
                             "counts": [[int(b), int(part.counts[b])] for b in nonzero],
                             "low": part.low if part.rows else None, "high": part.high if part.rows else None,
                             "missing": part.missing,
                             "values": None if part.values is None else [[k, n] for k, n in part.values.items()]}
        else:
            columns[name] = {"kind": CATEGORICAL, "counts": [[k, n] for k, n in part.counts.items()],
                             "missing": part.missing}
    return {"rows": summary.rows, "rejected": dict(summary.rejected), "columns": columns}


def summary_from_json(doc: Mapping[str, Any]) -> WindowSummary:
    columns: dict[str, Any] = {}
    for name, c in doc["columns"].items():
        if c["kind"] == NUMERIC:
            counts = np.zeros(int(c["bins"]), dtype=np.int64)
            for b, n in c["counts"]:
                counts[int(b)] += int(n)
            values = None if c["values"] is None else {float(k): int(n) for k, n in c["values"]}
            columns[name] = NumericSummary(counts, math.inf if c["low"] is None else float(c["low"]),
                                           -math.inf if c["high"] is None else float(c["high"]), int(c["missing"]),
                                           values)
        else:
            columns[name] = CategoricalSummary({k: int(n) for k, n in c["counts"]}, int(c["missing"]))
    return WindowSummary(columns, int(doc["rows"]), {k: int(v) for k, v in doc.get("rejected", {}).items()})


def add_frame(spec: SummarySpec, summary: WindowSummary, frame: pd.DataFrame) -> WindowSummary:
    """Adds one chunk's rows (a frame of feature columns) to `summary`, in place; returns it."""
    summary.rows += len(frame)
    for name, grid in spec.grids.items():
        part = summary.columns[name]
        if name not in frame:
            continue
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        finite = values[np.isfinite(values)]
        part.missing += int(values.size - finite.size)
        if finite.size:
            part.counts += np.bincount(grid.index(finite), minlength=grid.bins + 2)
            part.low, part.high = min(part.low, float(finite.min())), max(part.high, float(finite.max()))
            if part.values is not None:
                keys, counts = np.unique(finite, return_counts=True)
                _add_values(part, keys.tolist(), counts.tolist())
    for name in spec.categorical:
        if name in frame:
            part = summary.columns[name]
            counts = frame[name].value_counts(dropna=True, sort=False)
            part.missing += int(frame[name].isna().sum())
            for key, count in zip(counts.index.tolist(), counts.tolist(), strict=True):
                if count:
                    part.counts[key] = part.counts.get(key, 0) + int(count)
    return summary


def _add_values(part: NumericSummary, keys: list[float], counts: list[int]) -> None:
    if part.values is None:
        return
    for key, count in zip(keys, counts, strict=True):
        part.values[key] = part.values.get(key, 0) + count
    if len(part.values) > EXACT_VALUES:
        part.values = None


def merge(a: WindowSummary, b: WindowSummary) -> WindowSummary:
    """The summary of both parts' rows together (associative and commutative: any partitioning merges)."""
    columns: dict[str, Any] = {}
    for name, x in a.columns.items():
        y = b.columns[name]
        if isinstance(x, NumericSummary):
            merged = NumericSummary(x.counts + y.counts, min(x.low, y.low), max(x.high, y.high),
                                    x.missing + y.missing, dict(x.values) if x.values is not None else None)
            if y.values is None:
                merged.values = None
            else:
                _add_values(merged, list(y.values), list(y.values.values()))
            columns[name] = merged
        else:
            counts = dict(x.counts)
            for key, count in y.counts.items():
                counts[key] = counts.get(key, 0) + count
            columns[name] = CategoricalSummary(counts, x.missing + y.missing)
    rejected = dict(a.rejected)
    for reason, count in b.rejected.items():
        rejected[reason] = rejected.get(reason, 0) + count
    return WindowSummary(columns, a.rows + b.rows, rejected)


def drift(profile: ReferenceProfile, spec: SummarySpec, summary: WindowSummary, *,
          thresholds: Mapping[str, float] | None = None) -> tuple[list[FeatureDrift], dict[str, float | None]]:
    """Each profiled feature's drift from the summary, and the bound on each statistic's error (None: the
    method needs the rows; 0.0: exact)."""
    features, bounds = [], {}
    for name, col in profile.columns.items():
        part = summary.columns.get(name)
        threshold = (thresholds or {}).get(name)
        if part is None or part.rows == 0:
            features.append(_untested(col, 0, "no values in the current window"))
            bounds[name] = 0.0
        elif isinstance(part, CategoricalSummary):
            features.append(_exact(col, _category_pair(col, part), threshold))
            bounds[name] = 0.0
        elif part.values is not None:
            features.append(_exact(col, _value_pair(col, part), threshold))
            bounds[name] = 0.0
        else:
            feature, bound = _binned(col, spec.grids[name], part, threshold)
            features.append(feature)
            bounds[name] = bound
    return features, bounds


def _category_pair(col: ColumnProfile, part: CategoricalSummary) -> Pair:
    known = {key: i for i, key in enumerate(col.categories)}
    cur = np.zeros(len(col.categories), dtype=np.int64)
    unseen = []
    for key, count in part.counts.items():
        if key in known:
            cur[known[key]] += count
        else:
            unseen.append((key, count))
    keys = list(col.categories) + [k for k, _ in unseen]
    counts = Counts(keys, np.concatenate([col.counts, np.zeros(len(unseen), dtype=np.int64)]),
                    np.concatenate([cur, np.array([c for _, c in unseen], dtype=np.int64)]))
    return Pair(CATEGORICAL, col.rows, int(counts.cur.sum()), col.nunique, counts_=counts)


def _value_pair(col: ColumnProfile, part: NumericSummary) -> Pair:
    keys = np.array(sorted(part.values), dtype=np.float64)
    values = np.repeat(keys, [part.values[k] for k in keys.tolist()])
    return Pair(NUMERIC, col.rows, values.size, col.nunique, ref_sorted=col.values, cur_sorted=values,
                ref_std=col.std, ref_prefix=lambda: col.prefix, integer=col.integer and bool(
                    np.all(keys == np.round(keys))))


def _exact(col: ColumnProfile, pair: Pair, threshold: float | None) -> FeatureDrift:
    method = METHODS[resolve_method(col, pair)]
    threshold = method.threshold if threshold is None else float(threshold)
    try:
        statistic, p_value = method.compute(pair)
    except (ValueError, TypeError) as exc:
        return _untested(col, pair.cur_rows, str(exc), method.id)
    return FeatureDrift(col.name, col.kind, method.id, statistic, p_value, threshold,
                        bool(method.drifted(statistic, threshold)), effect(pair, method.id, statistic), col.rows,
                        pair.cur_rows)


def _binned(col: ColumnProfile, grid: Grid, part: NumericSummary,
            threshold: float | None) -> tuple[FeatureDrift, float | None]:
    method = METHODS[col.method]
    m = part.rows
    if method.id not in BOUNDED:
        return _untested(col, m, f"{method.id} needs the window's rows: not computed from a summary",
                         method.id), None
    model = WindowModel(col, grid, part)
    w1, w1_bound = model.wasserstein()
    threshold = method.threshold if threshold is None else float(threshold)
    if method.id == "wasserstein":
        statistic, p_value, bound = w1, None, w1_bound
    elif method.id == "ks":
        d, bound = model.ks()
        statistic = p_value = _ks_p_value(d, col.rows, m)
        bound = {"statistic": d, "d_bound": bound}
    else:
        statistic, bound = model.jensenshannon()
        p_value = None
    feature = FeatureDrift(col.name, col.kind, method.id, statistic, p_value, threshold,
                           bool(method.drifted(statistic, threshold)), w1, col.rows, m)
    return feature, bound if not isinstance(bound, dict) else bound["d_bound"]


def _ks_p_value(d: float, n: int, m: int) -> float:
    from scipy import stats

    big, small = sorted([float(n), float(m)], reverse=True)
    return float(np.clip(stats.distributions.kstwo.sf(d, np.round(big * small / (big + small))), 0, 1))


def _untested(col: ColumnProfile, rows: int, note: str, method: str | None = None) -> FeatureDrift:
    method = method or col.method
    return FeatureDrift(col.name, col.kind, method, math.nan, None, METHODS[method].threshold, False, math.nan,
                        col.rows, rows, note)


class WindowModel:
    """The window's CDF as the summary knows it: exact at every grid edge, and inside a bin spread like the
    reference's rows there (linearly where the reference has none), evaluated at every reference value."""

    def __init__(self, col: ColumnProfile, grid: Grid, part: NumericSummary) -> None:
        a, m = col.values, part.rows
        self.col, self.m = col, m
        inner = grid.edges()
        # the segments: reference values, grid edges and the window's extremes, within the union of ranges
        lo, hi = min(a[0], part.low), max(a[-1], part.high)
        points = np.unique(np.concatenate([a, inner[(inner > lo) & (inner < hi)], [lo, hi]]))
        self.points, self.widths = points[:-1], np.diff(points)
        bins = grid.index(self.points)
        before = np.concatenate([[0], np.cumsum(part.counts)])  # rows in bins below each bin
        ref_before = np.searchsorted(a, np.concatenate([[-np.inf], inner]), side="left")
        ref_in_bin = np.diff(np.concatenate([ref_before, [a.size]]))
        ref_le = np.searchsorted(a, self.points, side="right")
        self.f_ref = ref_le / a.size
        share = np.where(ref_in_bin[bins] > 0, (ref_le - ref_before[bins]) / np.maximum(ref_in_bin[bins], 1), np.nan)
        # bins without reference rows: linear across the part of the bin the window can occupy
        span_lo = np.maximum(np.concatenate([[lo], inner])[bins], part.low)
        span_hi = np.minimum(np.concatenate([inner, [hi]])[bins], part.high)
        middle = self.points + self.widths / 2  # a linear CDF integrates exactly at each segment's middle
        linear = np.clip((middle - span_lo) / np.maximum(span_hi - span_lo, 1e-300), 0, 1)
        share = np.where(np.isnan(share), linear, np.clip(share, 0, 1))
        self.f_cur = (before[bins] + part.counts[bins] * share) / m
        self.q = part.counts / m
        occupied = np.maximum(np.minimum(np.concatenate([inner, [hi]]), part.high)
                              - np.maximum(np.concatenate([[lo], inner]), part.low), 0)
        self.occupied = occupied
        self.grid, self.part, self.inner = grid, part, inner

    def wasserstein(self) -> tuple[float, float]:
        norm = max(self.col.std, 0.001)
        value = float(np.sum(np.abs(self.f_cur - self.f_ref) * self.widths)) / norm
        return value, float(np.sum(self.q * self.occupied)) / norm

    def ks(self) -> tuple[float, float]:
        return float(np.max(np.abs(self.f_cur - self.f_ref))), float(self.q.max())

    def jensenshannon(self) -> tuple[float, float]:
        a, part, m = self.col.values, self.part, self.m
        edges = st.sturges_edges(min(a[0], part.low), max(a[-1], part.high), a.size + m, self.col.integer)
        ref_p = st.histogram(a, edges) / a.size
        segment = np.searchsorted(self.points, edges, side="left") - 1  # the model just below each edge
        at = np.where(segment >= 0, self.f_cur[np.maximum(segment, 0)], 0.0)
        at[-1] = 1.0
        cur_p = np.diff(at)
        straddled = np.zeros(self.q.size, dtype=bool)
        straddled[self.grid.index(edges[1:-1])] = True
        exact_edges = np.isin(edges[1:-1], self.inner)
        straddled[self.grid.index(edges[1:-1][exact_edges])] = False
        share = float(self.q[straddled].sum())
        return float(st.js_distance(ref_p, cur_p)), math.sqrt(math.log(2) * min(share, 1.0))
