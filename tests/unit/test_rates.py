"""The rate nulls count every contiguous run of the reference exactly as a window would be judged."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors.signals import rates


def leave_run_out(values, size, outside):
    return np.sort([outside(values[s:s + size], np.concatenate([values[:s], values[s + size:]])) / size
                    for s in range(values.size - size + 1)])


def beyond_rest(run, rest):
    rest = rest[np.isfinite(rest)]
    low, high = (rest.min(), rest.max()) if rest.size else (np.inf, -np.inf)
    return int(((run < low) | (run > high)).sum())


def not_in_rest(run, rest):
    seen = set(rest.tolist())
    return sum(1 for code in run.tolist() if code >= 0 and code not in seen)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 6).map(float), st.just(float("nan"))), min_size=4, max_size=50),
       st.integers(1, 25))
def test_out_of_range_rates_equal_the_brute_force_count_of_every_run(values, size):
    values = np.array(values)
    size = min(size, values.size // 2)
    null = rates.out_of_range(values, size)
    if np.isfinite(values).sum() < 2:
        assert null.mode == "binomial"
        return
    assert np.allclose(null.rates, leave_run_out(values, size, beyond_rest))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1, 5), min_size=4, max_size=50), st.integers(1, 25))
def test_unseen_rates_equal_the_brute_force_count_of_every_run(codes, size):
    codes = np.array(codes)
    size = min(size, codes.size // 2)
    null = rates.unseen(codes, size)
    if (codes >= 0).sum() == 0:
        assert null.mode == "binomial"
        return
    assert np.allclose(null.rates, leave_run_out(codes, size, not_in_rest))


def test_row_local_rates_and_their_p_values():
    indicator = np.zeros(1000, dtype=int)
    indicator[100:150] = 1  # one bad stretch of 50 rows in the reference
    null = rates.row_local(indicator, 100)
    assert null.mode == "runs" and null.rates.max() == 0.5 and null.base_rate == indicator.mean()
    assert null.p_value(0.5, 100) < 0.07  # as bad as the worst stretch: rare, but it happened
    assert null.p_value(0.6, 100) == 1 / (1 + null.rates.size)  # worse than anything seen
    assert null.p_value(0.0, 100) == 1.0


def test_a_reference_shorter_than_two_windows_falls_back_to_the_binomial_law():
    null = rates.row_local(np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 10)
    assert null.mode == "binomial" and null.base_rate == 0.1
    assert null.p_value(0.5, 10) < 0.01 < null.p_value(0.2, 10)


def test_the_binomial_law_matches_scipy_without_importing_it():
    from scipy import stats

    from monitors.signals.rates import binom_ppf, binom_sf

    for n in (1, 7, 31, 1000, 12345, 1_000_000):
        for p in (0.0, 1e-6, 0.01, 0.095, 0.5, 0.99, 1.0):
            for q in (0.9, 0.99, 0.999):
                assert binom_ppf(q, n, p) == stats.binom.ppf(q, n, p), (q, n, p)
            sd = (n * p * (1 - p)) ** 0.5
            for k in (-1, 0, 1, 3, int(n * p), int(n * p + 3 * sd) + 1, n - 1, n):
                assert math.isclose(binom_sf(k, n, p), stats.binom.sf(k, n, p), rel_tol=1e-7, abs_tol=1e-300)
