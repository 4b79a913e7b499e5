"""The fast statistics equal their textbook definitions (scipy, numpy) on any data, ties included."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats

from monitors.drift.calibration import grid_size, scale
from monitors.drift.cvm import cvm_2samp_pvalue
from monitors.drift.stattests import (
    cdf_integral,
    histogram,
    ks_statistic,
    run_lengths,
    sturges_edges,
    wasserstein,
)
from monitors.drift.verdict import holm

samples = hs.lists(hs.integers(-30, 30).map(lambda v: v / 4), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_wasserstein_equals_scipy_with_ties(a, b):
    a, b = np.sort(np.array(a)), np.sort(np.array(b))
    assert wasserstein(a, b, cdf_integral(a)) == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_ks_statistic_is_bit_identical_to_scipy(a, b):
    a, b = np.sort(np.array(a)), np.sort(np.array(b))
    assert ks_statistic(a, b) == stats.ks_2samp(a, b, method="asymp").statistic


def test_wasserstein_on_large_unequal_samples():
    rng = np.random.default_rng(0)
    a, b = np.sort(rng.standard_t(3, 200_000)), np.sort(rng.standard_t(3, 7_000) + 0.05)
    assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(hs.lists(hs.floats(-1e6, 1e6), min_size=1, max_size=200), hs.booleans())
def test_sturges_edges_equal_numpy(values, integer):
    x = np.array(values)
    if integer:
        x = np.round(x).astype(np.int64)
    expected = np.histogram_bin_edges(x, bins="sturges")
    got = sturges_edges(x.min(), x.max(), x.size, integer)
    np.testing.assert_array_equal(got, expected)
    counts = histogram(np.sort(x.astype(np.float64)), got)
    np.testing.assert_array_equal(counts, np.histogram(x, got)[0])


def test_run_lengths_counts_each_value():
    values, counts = run_lengths(np.array([1.0, 1.0, 2.0, 5.0, 5.0, 5.0]))
    assert values.tolist() == [1.0, 2.0, 5.0]
    assert counts.tolist() == [2, 1, 3]


def test_cramer_von_mises_asymptotic_equals_scipy():
    rng = np.random.default_rng(2)
    x, y = np.sort(rng.normal(size=300)), np.sort(rng.normal(0.2, size=250))
    assert cvm_2samp_pvalue(x, y) == pytest.approx(stats.cramervonmises_2samp(x, y).pvalue, abs=1e-12)


def test_cramer_von_mises_small_samples_never_fail():
    # evidently's exact branch fails under numpy 2 for these sizes; we answer with scipy's exact p-value
    x, y = np.array([0.1, 0.5, 0.9, 1.3]), np.array([0.2, 0.4, 2.0, 2.5, 3.0, 3.1])
    assert cvm_2samp_pvalue(x, y) == pytest.approx(stats.cramervonmises_2samp(x, y, method="exact").pvalue)
    with pytest.raises(ValueError, match="at least two"):
        cvm_2samp_pvalue(np.array([1.0]), y)


def test_holm_steps_down_and_stops_at_first_failure():
    assert holm({"a": 0.001, "b": 0.006, "c": 0.007}, 0.01) == {"a"}  # b needs <= 0.01/2, so c is not tried
    assert holm({"a": 0.001, "b": 0.004, "c": 0.009}, 0.01) == {"a", "b", "c"}
    assert holm({}, 0.01) == set()


def test_null_grid_and_scale():
    assert grid_size(900) == grid_size(905)
    assert grid_size(10**7) == round(2 ** (round(np.log2(10**7) * 8) / 8))  # no cap: any size costs the same
    assert scale(100, 100, 10**9) == pytest.approx(1.0, abs=1e-5)  # a tiny draw from a huge reference
    assert scale(1000, 4000, 10**9) == pytest.approx(0.5, abs=1e-5)  # 4x the rows: half the noise
    # a draw is part of the reference, so it sits closer to it than an independent window would
    assert scale(1000, 1000, 5000, replace=False) > 1.2


@pytest.mark.parametrize("size", [40, 300])
def test_binned_null_is_exact_when_every_rank_is_its_own_bin(size):
    """A reference of at most 1024 rows gets one bin per rank: the null is then the exact Wasserstein
    distance of each bootstrap window, ties included."""
    import pandas as pd

    from monitors.drift import calibration
    from monitors.drift.profile import build_profile

    rng = np.random.default_rng(3)
    col = build_profile(pd.DataFrame({"x": rng.gamma(2, 1, 1000).round(1)}), {"x": "numeric"}).columns["x"]
    null = calibration.simulate(col, size, 5, np.random.default_rng(9))
    drawn = np.floor(np.random.default_rng(9).random((5, size)) * col.rows).astype(int)  # the rows it drew
    direct = [stats.wasserstein_distance(col.values[p], col.values) / col.std for p in drawn]
    np.testing.assert_allclose(null, direct, rtol=0, atol=1e-12)
