"""The binned no-drift null agrees with exact resampling of the reference, shape by shape and size by size.

Exact resampling: draw a window's rows from the reference and compute scipy's Wasserstein distance to it.
The binned null never looks at rows (see monitors.drift.calibration); this is the evidence that it may not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitors.drift import calibration
from monitors.drift.profile import build_profile
from monitors.drift.stattests import cdf_integral, wasserstein
from monitors.drift.verdict import Calibrator

SHAPES = {
    "normal": lambda rng, n: rng.normal(0, 1, n),
    "lognormal": lambda rng, n: rng.lognormal(0, 1, n),
    "student3": lambda rng, n: rng.standard_t(3, n),
    "poisson": lambda rng, n: rng.poisson(4, n).astype(float),
    "rounded": lambda rng, n: rng.normal(0, 1, n).round(1),
}
DRAWS = 6000
QUANTILES = (0.5, 0.9, 0.99)


def exact_null(values: np.ndarray, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Wasserstein distances of bootstrap windows (stattests.wasserstein equals scipy's: test_drift_stats)."""
    prefix = cdf_integral(values)
    return np.array([wasserstein(values, np.sort(values[rng.integers(0, values.size, size)]), prefix)
                     for _ in range(draws)]) / values.std()


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("size", [60, 2000])
def test_binned_null_quantiles_match_exact_resampling(shape, size):
    rng = np.random.default_rng(11)
    reference = pd.DataFrame({"x": SHAPES[shape](rng, 20_000)})
    col = build_profile(reference, {"x": "numeric"}).columns["x"]
    binned = np.quantile(calibration.simulate(col, size, DRAWS, np.random.default_rng(1)), QUANTILES)
    exact = np.quantile(exact_null(col.values, size, DRAWS, np.random.default_rng(2)), QUANTILES)
    # sampling error of these quantiles with 6000 draws is about 1% (median) to 3% (99th percentile)
    ratio = binned / exact
    assert abs(ratio[:2] - 1).max() <= 0.04 and abs(ratio[2] - 1) <= 0.08, ratio


def test_runs_of_a_time_ordered_reference_carry_its_day_to_day_level():
    rng = np.random.default_rng(4)
    levels = np.repeat(rng.normal(0, 0.5, 100), 200)  # 100 "days" of 200 rows, each with its own level
    frame = pd.DataFrame({"x": levels + rng.normal(0, 1, levels.size)})
    profile = build_profile(frame, {"x": "numeric"}, fingerprint="days")
    by_runs = Calibrator(profile, frame).null("x", 200, 1000)
    by_rows = Calibrator(profile).null("x", 200, 1000)
    col = profile.columns["x"]
    exact_runs = [wasserstein(col.values, np.sort(frame.x.to_numpy()[s:s + 200]), col.prefix)
                  for s in range(0, levels.size - 200, 50)]
    # a day differs from the whole by its level: runs see it, bootstrap rows do not
    assert np.median(by_runs) > 1.5 * np.median(by_rows)
    assert np.median(exact_runs) / col.std == pytest.approx(
        np.median(by_runs) / calibration.scale(200, 200, levels.size, replace=False), rel=0.1)
