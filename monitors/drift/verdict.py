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
from typing import TYPE_CHECKING, Any

import numpy as np

from core.files import cached
from monitors.drift import calibration
from monitors.drift.engine import FeatureDrift
from monitors.drift.profile import ReferenceProfile

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
    """Per profile: null distributions of each feature's effect, cached per (column, grid window size).

    Without `reference`, no-drift windows are random rows of the reference (drawn from the profile).
    With the reference frame in its time order, they are contiguous runs of its rows, so the null
    also carries the reference's own day-to-day variation (seasonality, autocorrelation): windows
    that look like some stretch of the reference do not alarm.
    """

    def __init__(self, profile: ReferenceProfile, reference: pd.DataFrame | None = None, *, resamples: int = 200,
                 seed: int = 0, cache_dir: Path | None = None) -> None:
        if resamples < 1:
            raise ValueError(f"resamples must be positive, got {resamples}")
        self.profile = profile
        self.reference = reference
        self.resamples = resamples
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.mode = "random" if reference is None else "runs"
        self._nulls: dict[tuple[str, int, int], np.ndarray] = {}
        self._orders: dict[str, np.ndarray] = {}

    def draws_for(self, family: int, fwer: float) -> int:
        """Enough draws that the smallest p-value, 1/(draws+1), can pass Holm's first step with room."""
        return max(self.resamples, math.ceil(2 * family / fwer))

    def null(self, column: str, rows: int, draws: int) -> np.ndarray:
        """Sorted no-drift effects for a window of `rows` rows (drawn at the grid size, then rescaled)."""
        col = self.profile.columns[column]
        size = calibration.grid_size(rows)
        return self._grid_null(column, size, draws) * calibration.scale(size, rows, col.rows)

    def _grid_null(self, column: str, size: int, draws: int) -> np.ndarray:
        # a null with more draws serves a smaller family just as well: reuse it rather than redraw
        held = [d for (c, s, d) in self._nulls if c == column and s == size and d >= draws]
        if held:
            return self._nulls[(column, size, min(held))]
        key = (column, size, draws)
        if self.cache_dir is None:
            self._nulls[key] = self._compute(key)
        else:  # a damaged cached null (truncated, wrong length, not sorted) is logged and recomputed
            self._nulls[key] = cached(self._path(key), lambda path: _load_null(path, draws), lambda: self._compute(key),
                                      lambda values, out: np.save(out, values))
        return self._nulls[key]

    def _compute(self, key: tuple[str, int, int]) -> np.ndarray:
        column, size, draws = key
        index = list(self.profile.columns).index(column)
        rng = np.random.default_rng([self.seed, index, size, draws])
        return np.sort(calibration.simulate(self.profile.columns[column], size, draws, rng, self._order(column)))

    def _order(self, column: str) -> np.ndarray | None:
        if self.reference is None:
            return None
        if column not in self._orders:
            if column not in self.reference.columns:
                raise ValueError(f"column {column!r} is not in the reference frame given to the calibrator")
            self._orders[column] = calibration.reference_order(self.profile.columns[column], self.reference[column])
        return self._orders[column]

    def _path(self, key: tuple[str, int, int]) -> Path:
        text = json.dumps([self.profile.fingerprint, *key, self.seed, self.mode, calibration.MAX_SIZE])
        return self.cache_dir / f"null-{hashlib.sha256(text.encode()).hexdigest()[:32]}.npy"

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
        exceed = int(null.size - np.searchsorted(null, feature.effect, side="left"))
        return {"effect": float(feature.effect), "effect_method": feature.effect_method,
                "exceedances": exceed, "p_value": (1 + exceed) / (1 + null.size),
                "null_q99": float(null[int(0.99 * (null.size - 1))])}  # sorted: a lookup, not np.quantile


def holm(p_values: Mapping[str, float], fwer: float) -> set[str]:
    """Names Holm's step-down procedure rejects at family-wise error rate `fwer`."""
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    rejected = set()
    for rank, (name, p) in enumerate(ordered):
        if p > fwer / (len(ordered) - rank):
            break
        rejected.add(name)
    return rejected


def _load_null(path: Path, draws: int) -> np.ndarray:
    """A cached null as written by `_compute`: sorted, finite, `draws` values; ValueError when it is not."""
    values = np.load(path, allow_pickle=False)
    if values.ndim != 1 or values.size != draws or not np.isfinite(values).all() or (np.diff(values) < 0).any():
        raise ValueError(f"{path.name} is not a sorted null of {draws} finite values")
    return values
