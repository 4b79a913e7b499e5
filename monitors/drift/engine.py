"""Per-feature drift of a current window against a cached reference profile.

Only the current window is touched: each numeric column is sorted once and read against the profile's
sorted reference values; each categorical column is coded against the reference categories in one
vectorised pass. One column at a time, so memory beyond the window itself stays at one column's worth.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.plain import finite
from monitors.drift import stattests as st
from monitors.drift.methods import METHODS, default_method, needs_union
from monitors.drift.profile import ColumnProfile, ReferenceProfile, clean, is_integer, numeric_values, per_column
from monitors.drift.stattests import CATEGORICAL, NUMERIC, Counts, Pair

if TYPE_CHECKING:
    import pandas as pd

EFFECT_METHOD = {NUMERIC: "wasserstein", CATEGORICAL: "jensenshannon"}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: evidently's statistic and decision, plus an effect size on a common scale.

    `statistic` is what evidently reports as the drift score (a p-value for ks, chisquare, z and
    cramer_von_mises; a distance otherwise). `effect` is always the normalised Wasserstein distance for
    numeric features and the Jensen-Shannon distance for categorical ones, whatever the test, so
    features can be compared and floored alike. `note` says why a feature could not be tested.
    """

    name: str
    kind: str
    method: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    effect: float
    reference_rows: int
    current_rows: int
    note: str | None = None

    @property
    def effect_method(self) -> str:
        return EFFECT_METHOD[self.kind]

    @property
    def tested(self) -> bool:
        return self.note is None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "method": self.method, "statistic": finite(self.statistic),
                "p_value": finite(self.p_value), "threshold": self.threshold, "drifted": self.drifted,
                "effect": finite(self.effect), "effect_method": self.effect_method,
                "reference_rows": self.reference_rows, "current_rows": self.current_rows, "note": self.note}


def compare(profile: ReferenceProfile, current: pd.DataFrame, *,
            thresholds: Mapping[str, float] | None = None, keep_prefix: bool = True) -> list[FeatureDrift]:
    """Drift of every profiled column; `thresholds` overrides a column's method default by column name.
    `keep_prefix=False` (one check per process, e.g. the CLI): each column's CDF integral is computed, used
    and freed rather than kept on the profile (a million-row reference: 8 MB a column)."""
    thresholds = thresholds or {}
    work = [(col, current[name] if name in current.columns else None, thresholds.get(name), keep_prefix)
            for name, col in profile.columns.items()]
    return per_column(lambda args: compare_column(*args), work)


def compare_column(col: ColumnProfile, series: pd.Series | None, threshold: float | None = None,
                   keep_prefix: bool = True) -> FeatureDrift:
    if series is None:
        return _untested(col, 0, "column missing from the current window")
    pair = numeric_pair(col, series, keep_prefix) if col.kind == NUMERIC else categorical_pair(col, series)
    if pair.cur_rows == 0:
        return _untested(col, 0, "no values in the current window")
    method = METHODS[resolve_method(col, pair)]
    threshold = method.threshold if threshold is None else float(threshold)
    try:
        statistic, p_value = method.compute(pair)
    except (ValueError, TypeError) as exc:  # cramer_von_mises on one row, z on unorderable values: evidently fails too
        return _untested(col, pair.cur_rows, str(exc), method.id)
    return FeatureDrift(name=col.name, kind=col.kind, method=method.id, statistic=statistic, p_value=p_value,
                        threshold=threshold, drifted=bool(method.drifted(statistic, threshold)),
                        effect=effect(pair, method.id, statistic), reference_rows=col.rows,
                        current_rows=pair.cur_rows)


def resolve_method(col: ColumnProfile, pair: Pair) -> str:
    """evidently picks the default method from the distinct values of reference and current together."""
    if col.auto and needs_union(col.kind, col.rows, col.nunique):
        return default_method(col.kind, col.rows, pair.union_nunique())
    return col.method


def effect(pair: Pair, method: str, statistic: float) -> float:
    if method == EFFECT_METHOD[pair.kind]:
        return statistic
    if pair.kind == NUMERIC:
        return st.wasserstein_norm(pair)[0]
    return st.jensenshannon(pair)[0]


def numeric_pair(col: ColumnProfile, series: pd.Series, keep_prefix: bool = True) -> Pair:
    values = numeric_values(series)
    values.sort()
    prefix = (lambda: col.prefix) if keep_prefix else (lambda: st.cdf_integral(col.values))
    return Pair(NUMERIC, col.rows, values.size, col.nunique, ref_sorted=col.values, cur_sorted=values,
                ref_std=col.std, ref_prefix=prefix, integer=col.integer and is_integer(series))


def categorical_pair(col: ColumnProfile, series: pd.Series) -> Pair:
    counts = current_counts(col, series)
    return Pair(CATEGORICAL, col.rows, int(counts.cur.sum()), col.nunique, counts_=counts)


def current_counts(col: ColumnProfile, series: pd.Series) -> Counts:
    """Counts of the window over the reference categories, then any unseen values, by integer codes."""
    import pandas as pd

    if pd.api.types.is_float_dtype(series.dtype):
        series = clean(series)
    codes = pd.Categorical(series, categories=pd.Index(list(col.categories))).codes
    known = codes >= 0
    cur = np.bincount(codes[known], minlength=len(col.categories)).astype(np.int64)
    keys, ref = list(col.categories), col.counts
    if not known.all():
        unseen = series[~known].dropna().value_counts(sort=False)
        if len(unseen):
            keys += [v.item() if hasattr(v, "item") else v for v in unseen.index]
            ref = np.concatenate([ref, np.zeros(len(unseen), dtype=np.int64)])
            cur = np.concatenate([cur, unseen.to_numpy(dtype=np.int64)])
    return Counts(keys, ref, cur)


def _untested(col: ColumnProfile, rows: int, note: str, method: str | None = None) -> FeatureDrift:
    method = method or col.method
    return FeatureDrift(name=col.name, kind=col.kind, method=method, statistic=math.nan, p_value=None,
                        threshold=METHODS[method].threshold, drifted=False, effect=math.nan,
                        reference_rows=col.rows, current_rows=rows, note=note)
