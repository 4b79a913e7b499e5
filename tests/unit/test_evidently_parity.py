"""Our drift statistics equal evidently 0.7's, method by method, on random and adversarial data.

evidently is the reference implementation: its stattest objects are called directly on the data its
`get_one_column_drift` would pass them (NaN and +-inf dropped), and one Report with DataDriftPreset
checks the preset path end to end. evidently is imported once per module (it takes seconds).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from monitors.drift.engine import compare
from monitors.drift.methods import METHODS
from monitors.drift.profile import build_profile, infer_kinds

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def ev():
    from evidently.legacy.calculations import stattests as s
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    tests = {"ks": s.ks_stat_test, "wasserstein": s.wasserstein_stat_test, "psi": s.psi_stat_test,
             "jensenshannon": s.jensenshannon_stat_test, "chisquare": s.chi_stat_test, "z": s.z_stat_test,
             "hellinger": s.hellinger_stat_test, "kl_div": s.kl_div_stat_test,
             "cramer_von_mises": s.cramer_von_mises}
    return SimpleNamespace(tests=tests, get_stattest=get_stattest, types={
        "numeric": ColumnType.Numerical, "categorical": ColumnType.Categorical})


def _clean(series: pd.Series) -> pd.Series:
    return series.replace([-np.inf, np.inf], np.nan).dropna()


def evidently_drift(ev, ref: pd.Series, cur: pd.Series, kind: str, method: str | None):
    ref, cur = _clean(ref), _clean(cur)
    column_type = ev.types[kind]
    test = ev.get_stattest(ref, cur, column_type, None) if method is None else ev.tests[method]
    result = test(ref.copy(), cur.copy(), column_type, None)
    return test.name, float(result.drift_score), bool(result.drifted)


def ours(ref: pd.Series, cur: pd.Series, kind: str, method: str | None):
    profile = build_profile(ref.to_frame("x"), {"x": kind}, methods={"x": method} if method else None)
    return compare(profile, cur.to_frame("x"))[0]


def _cases() -> dict[str, tuple[pd.Series, pd.Series, str]]:
    rng = np.random.default_rng(7)
    normal = lambda n, mu=0.0: pd.Series(rng.normal(mu, 1, n))  # noqa: E731
    with_gaps = normal(700)
    with_gaps[[3, 50, 400]] = [np.nan, np.inf, -np.inf]
    cur_gaps = normal(500, 0.2)
    cur_gaps[[1, 2]] = np.nan
    letters = list("abcdef")
    return {
        "normal_small": (normal(400), normal(300, 0.3), "numeric"),
        "normal_medium": (normal(3000), normal(2000, 0.1), "numeric"),
        "normal_large_asymptotic_ks": (normal(12000), normal(11000, 0.02), "numeric"),
        "ties_rounded": (normal(900).round(1), normal(700, 0.1).round(1), "numeric"),
        "ints_many_values": (pd.Series(rng.integers(0, 50, 1500)), pd.Series(rng.integers(5, 60, 1200)), "numeric"),
        "ints_few_values_small": (pd.Series(rng.integers(0, 4, 600)), pd.Series(rng.integers(0, 4, 500)), "numeric"),
        "ints_few_values_large": (pd.Series(rng.integers(0, 3, 5000)), pd.Series(rng.integers(0, 5, 900)), "numeric"),
        "union_switches_method": (pd.Series(rng.integers(0, 5, 800)), pd.Series(rng.integers(0, 8, 400)), "numeric"),
        "binary_numeric": (pd.Series(rng.integers(0, 2, 700)), pd.Series(rng.integers(0, 2, 300)), "numeric"),
        "constant_both": (pd.Series(np.full(300, 2.5)), pd.Series(np.full(200, 2.5)), "numeric"),
        "constant_reference": (pd.Series(np.full(1200, 1.0)), normal(300), "numeric"),
        "nan_and_inf": (with_gaps, cur_gaps, "numeric"),
        "one_current_row": (normal(500), normal(1, 3.0), "numeric"),
        "categories_small": (pd.Series(rng.choice(letters, 800)), pd.Series(rng.choice(letters, 600)), "categorical"),
        "categories_large": (pd.Series(rng.choice(letters, 4000, p=[.3, .2, .2, .1, .1, .1])),
                             pd.Series(rng.choice(letters, 3000)), "categorical"),
        "unseen_categories": (pd.Series(rng.choice(letters[:4], 2000)), pd.Series(rng.choice(letters, 900)),
                              "categorical"),
        "bool_column": (pd.Series(rng.random(1500) < 0.3), pd.Series(rng.random(700) < 0.4), "categorical"),
        "two_categories_small": (pd.Series(rng.choice(["x", "y"], 400)), pd.Series(rng.choice(["x", "y"], 300)),
                                 "categorical"),
        "int_categories_with_nan": (pd.Series(rng.integers(0, 4, 900)).where(rng.random(900) > 0.1),
                                    pd.Series(rng.integers(1, 6, 800)).where(rng.random(800) > 0.2),
                                    "categorical"),
        "one_category_each": (pd.Series(["k"] * 50), pd.Series(["k"] * 20), "categorical"),
    }


CASES = _cases()
METHOD_IDS = [None, *METHODS]


@pytest.mark.parametrize("method", METHOD_IDS, ids=lambda m: m or "default")
@pytest.mark.parametrize("case", list(CASES))
def test_statistic_equals_evidently(ev, case, method):
    ref, cur, kind = CASES[case]
    if method is not None and kind not in METHODS[method].kinds:
        with pytest.raises(ValueError, match="does not apply"):
            ours(ref, cur, kind, method)
        return
    try:
        name, score, drifted = evidently_drift(ev, ref, cur, kind, method)
    except (ValueError, TypeError) as exc:  # e.g. cramer_von_mises on one row: evidently fails, we say why
        result = ours(ref, cur, kind, method)
        assert result.note or math.isfinite(result.statistic), exc
        return
    result = ours(ref, cur, kind, method)
    assert result.method == name
    assert _same(result.statistic, score), (result.statistic, score)
    assert result.drifted == drifted
    if METHODS[name].p_value:
        assert _same(result.p_value, result.statistic)
    else:
        assert result.p_value is None


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= TOLERANCE


def test_random_data_many_seeds(ev):
    """Default methods on many random shapes and sizes around evidently's 1000-row switch."""
    rng = np.random.default_rng(11)
    worst = 0.0
    for _ in range(25):
        n, m = (int(x) for x in rng.integers(5, 2500, 2))
        ref = pd.Series(rng.gamma(rng.uniform(0.5, 3), size=n)).round(int(rng.integers(0, 4)))
        cur = pd.Series(rng.gamma(rng.uniform(0.5, 3), size=m)).round(int(rng.integers(0, 4)))
        name, score, _ = evidently_drift(ev, ref, cur, "numeric", None)
        result = ours(ref, cur, "numeric", None)
        assert result.method == name
        worst = max(worst, abs(result.statistic - score))
    assert worst <= TOLERANCE


def test_report_with_data_drift_preset_agrees(ev):
    """The preset path (type inference, default methods, NaN handling) gives our numbers."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(3)

    def frame(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame({
            "amount": rng.lognormal(shift, 1, n), "score": rng.normal(shift, 1, n).round(2),
            "channel": rng.choice(["web", "app", "store", "phone"], n), "flag": rng.random(n) < 0.2 + shift / 4,
            "level": rng.integers(0, 4 + int(shift * 4), n)})

    for rows in (800, 2500):  # both sides of evidently's 1000-row method switch
        ref, cur = frame(rows, 0.0), frame(rows // 2, 0.4)
        cur.loc[cur.index[:5], "amount"] = np.nan
        snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
        theirs = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"] if "column" in m["config"]}
        kinds = infer_kinds(ref)
        assert set(kinds) == set(theirs)
        mine = {f.name: f.statistic for f in compare(build_profile(ref, kinds), cur)}
        for name, value in theirs.items():
            assert abs(mine[name] - value) <= TOLERANCE, (rows, name, mine[name], value)


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "kl_div"])
def test_integer_columns_get_numpys_integer_bin_width(ev, method):
    """With integer data numpy widens sturges bins to >= 1: 21 values over 550k rows make 20 bins, not 21."""
    rng = np.random.default_rng(4)
    ref, cur = pd.Series(rng.integers(0, 21, 300_000)), pd.Series(rng.integers(0, 21, 250_000))
    name, score, _ = evidently_drift(ev, ref, cur, "numeric", method)
    as_float = ours(ref, cur.astype(float), "numeric", method)  # mixed dtypes: no widening, as in evidently
    assert abs(ours(ref, cur, "numeric", method).statistic - score) <= TOLERANCE
    assert abs(as_float.statistic - evidently_drift(ev, ref, cur.astype(float), "numeric", method)[1]) <= TOLERANCE
    assert as_float.statistic != score
