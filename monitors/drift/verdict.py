"""Dataset-level drift verdicts: evidently's share-of-columns rule, and a calibrated default.

The calibrated verdict asks two questions of every feature and alerts when any feature answers yes
to both: is its effect size beyond what windows of this size drawn from the reference itself show
(an exceedance p-value against a resampled null, Holm-corrected across features so that no-drift
checks alarm at most `fwer` of the time), and is the effect large enough to matter (a floor on the
same scale as evidently's distance thresholds)? Significance alone cries wolf on large windows;
the floor alone ignores how noisy small windows are; the share-of-columns rule misses a single
feature that really moved.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from core.files import cached
from monitors.drift import calibration
from monitors.drift.engine import FeatureDrift
from monitors.drift.profile import ReferenceProfile
from monitors.drift.stattests import NUMERIC

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_FLOORS = {"wasserstein": 0.1, "jensenshannon": 0.1}


@dataclass(frozen=True)
class DatasetVerdict:
    drift: bool
    drift_share: float
    policy: str  # "calibrated" | "evidently"
    drifted_features: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"drift": self.drift, "drift_share": self.drift_share, "policy": self.policy,
                "drifted_features": list(self.drifted_features), "details": self.details}


def evidently_verdict(features: list[FeatureDrift], share: float = 0.5) -> DatasetVerdict:
    """evidently's rule: dataset drift when at least `share` of the tested columns drifted."""
    tested = [f for f in features if f.tested]
    drifted = [f.name for f in tested if f.drifted]
    drift_share = len(drifted) / len(tested) if tested else 0.0
    return DatasetVerdict(drift=bool(tested) and drift_share >= share, drift_share=drift_share,
                          policy="evidently", drifted_features=drifted,
                          details={"share_threshold": share, "tested": len(tested)})


class Calibrator:
    """Per profile: null distributions of each feature's effect, cached per grid window size.

    Without `reference`, no-drift windows are bootstrap samples of the reference (drawn from the profile).
    With the reference frame in its time order (or a function returning it, called only when a null is
    not cached), they are contiguous runs of its rows, so the null also carries the reference's own
    day-to-day variation (seasonality, autocorrelation): windows that look like some stretch of the
    reference do not alarm. Windows larger than half the reference are bootstrap samples either way.

    For other signals: `null(column, rows, draws)` is the sorted no-drift effect of one profiled column
    for a window of `rows` rows; `p_value(column, effect, rows, draws)` its exceedance p-value.
    """

    def __init__(self, profile: ReferenceProfile, reference: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
                 *, resamples: int = 200, seed: int = 0, cache_dir: Path | None = None) -> None:
        if resamples < 1:
            raise ValueError(f"resamples must be positive, got {resamples}")
        self.profile = profile
        self._reference = reference
        self.resamples = resamples
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.mode = "random" if reference is None else "runs"
        self._nulls: dict[tuple[int, int], dict[str, np.ndarray]] = {}  # (grid size, draws) -> column -> null
        self._runs: dict[str, calibration.Runs] = {}

    def draws_for(self, family: int, fwer: float) -> int:
        """Enough draws that the smallest p-value, 1/(draws+1), can pass Holm's first step with room."""
        return max(self.resamples, math.ceil(2 * family / fwer))

    def null(self, column: str, rows: int, draws: int) -> np.ndarray:
        """Sorted no-drift effects for a window of `rows` rows (drawn near the grid size, then rescaled)."""
        size = calibration.grid_size(rows)
        return self._grid_nulls(size, draws)[column] * calibration.resize(size, rows, self.profile.columns[column].rows)

    def p_value(self, column: str, effect: float, rows: int, draws: int) -> float:
        return exceedance(self.null(column, rows, draws), effect)[1]

    def _runs_for(self, size: int, reference_rows: int) -> bool:
        return self.mode == "runs" and not size > reference_rows // 2

    def _grid_nulls(self, size: int, draws: int) -> dict[str, np.ndarray]:
        # a null with more draws serves a smaller family just as well: reuse it rather than redraw
        held = [d for (s, d) in self._nulls if s == size and d >= draws]
        if held:
            return self._nulls[(size, min(held))]
        key = (size, draws)
        if self.cache_dir is None:
            self._nulls[key] = self._compute(size, draws)
        else:  # a damaged cached null (truncated, wrong length, not sorted) is logged and recomputed
            self._nulls[key] = cached(self._path(key), lambda path: self._load(path, draws),
                                      lambda: self._compute(size, draws), self._save)
        return self._nulls[key]

    def _compute(self, size: int, draws: int) -> dict[str, np.ndarray]:
        """Nulls for independent windows of `size` rows. With runs, each quantile is the larger of the runs'
        and the bootstrap's: runs add the reference's day-to-day variation, but a reference only a few
        windows long holds too few distinct runs to show how far a window can stray by chance."""
        columns = list(self.profile.columns.values())
        rng = np.random.default_rng([self.seed, size, draws])
        numeric = [c for c in columns if c.kind == NUMERIC]
        nulls: dict[str, np.ndarray] = {}
        if numeric:  # every numeric column's bootstrap in one draw and one matrix product
            nulls.update(zip([c.name for c in numeric], calibration.numeric_nulls(numeric, size, draws, rng).T,
                             strict=True))
        for i, col in enumerate(columns):
            local = np.random.default_rng([self.seed, size, draws, i])
            if col.name not in nulls:
                nulls[col.name] = calibration.simulate(col, size, draws, local)
            nulls[col.name] = np.sort(nulls[col.name]) * calibration.scale(size, size, col.rows)
            if self._runs_for(size, col.rows):
                runs = np.sort(calibration.simulate(col, size, draws, local, self._runs_of(col.name)))
                runs *= calibration.scale(calibration.run_rows(size, col.rows), size, col.rows, replace=False)
                nulls[col.name] = np.maximum(nulls[col.name], runs)
        return nulls

    def _runs_of(self, column: str) -> calibration.Runs:
        if column not in self._runs:
            if callable(self._reference):
                self._reference = self._reference()  # loaded once, and only when a null is not cached
            if column not in self._reference.columns:
                raise ValueError(f"column {column!r} is not in the reference frame given to the calibrator")
            self._runs[column] = calibration.Runs(self.profile.columns[column], self._reference[column])
        return self._runs[column]

    def _path(self, key: tuple[int, int]) -> Path:
        text = json.dumps([self.profile.fingerprint, *key, self.seed, self.mode, calibration.METHOD])
        return self.cache_dir / f"null-{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"

    def _save(self, nulls: dict[str, np.ndarray], out: Any) -> None:
        np.savez(out, **{f"c{i}": nulls[name] for i, name in enumerate(self.profile.columns)})

    def _load(self, path: Path, draws: int) -> dict[str, np.ndarray]:
        """A cached set of nulls as `_save` wrote it: sorted, finite, `draws` values per column, else ValueError."""
        with np.load(path, allow_pickle=False) as data:
            nulls = {name: data[f"c{i}"] for i, name in enumerate(self.profile.columns)}
        for values in nulls.values():
            if values.ndim != 1 or values.size != draws or not np.isfinite(values).all() or (np.diff(values) < 0).any():
                raise ValueError(f"{path.name} is not a set of sorted nulls of {draws} finite values")
        return nulls

    def verdict(self, features: list[FeatureDrift], current_rows: int, *, fwer: float = 0.01,
                effect_floors: Mapping[str, float] | None = None) -> DatasetVerdict:
        """Drift when some feature is significant against its calibrated null (Holm, family-wise `fwer`)
        and its effect is at least its floor. Floors are keyed by feature name or effect method."""
        if not 0 < fwer < 1:
            raise ValueError(f"fwer must be in (0, 1), got {fwer}")
        tested = [f for f in features if f.tested and math.isfinite(f.effect) and f.name in self.profile.columns]
        draws = self.draws_for(len(tested), fwer)
        rows = {f.name: self._exceedance(f, f.current_rows or current_rows, draws) for f in tested}
        significant = holm({name: row["p_value"] for name, row in rows.items()}, fwer)
        floors = {**DEFAULT_FLOORS, **(effect_floors or {})}
        drifted = []
        for f in tested:
            row = rows[f.name]
            row["floor"] = float(floors.get(f.name, floors.get(f.effect_method, 0.0)))
            row["significant"] = f.name in significant
            row["drifted"] = bool(row["significant"] and f.effect >= row["floor"])
            if row["drifted"]:
                drifted.append(f.name)
        share = len(drifted) / len(tested) if tested else 0.0
        return DatasetVerdict(drift=bool(drifted), drift_share=share, policy="calibrated",
                              drifted_features=drifted,
                              details={"fwer": fwer, "resamples": draws, "null": self.mode,
                                       "window_rows": current_rows,
                                       "features": rows})

    def _exceedance(self, feature: FeatureDrift, rows: int, draws: int) -> dict[str, Any]:
        null = self.null(feature.name, rows, draws)
        exceed, p_value = exceedance(null, feature.effect)
        return {"effect": float(feature.effect), "effect_method": feature.effect_method,
                "exceedances": exceed, "p_value": p_value,
                "null_q99": float(null[int(0.99 * (null.size - 1))])}  # sorted: a lookup, not np.quantile


def exceedance(null: np.ndarray, effect: float) -> tuple[int, float]:
    """How many of a sorted null reach `effect`, and the exceedance p-value (1 + that) / (1 + draws)."""
    exceed = int(null.size - np.searchsorted(null, effect, side="left"))
    return exceed, (1 + exceed) / (1 + null.size)


def holm(p_values: Mapping[str, float], fwer: float) -> set[str]:
    """Names Holm's step-down procedure rejects at family-wise error rate `fwer`."""
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    rejected = set()
    for rank, (name, p) in enumerate(ordered):
        if p > fwer / (len(ordered) - rank):
            break
        rejected.add(name)
    return rejected

