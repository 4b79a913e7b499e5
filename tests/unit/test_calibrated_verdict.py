"""The calibrated dataset verdict: rare false alarms, one moved feature is enough, big windows don't cry wolf."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitors.drift.engine import compare
from monitors.drift.profile import build_profile
from monitors.drift.verdict import Calibrator, evidently_verdict

NO_FLOORS = {"wasserstein": 0.0, "jensenshannon": 0.0}


def population(n: int, seed: int) -> pd.DataFrame:
    """Twelve features of assorted shapes: skewed, heavy-tailed, discrete, rare categories."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "normal": rng.normal(10, 2, n), "lognormal": rng.lognormal(0, 1, n), "expo": rng.exponential(3, n),
        "student": rng.standard_t(4, n), "uniform": rng.uniform(0, 1, n), "delay": rng.gamma(0.7, 20, n),
        "count": rng.poisson(4, n).astype(float), "rounded": rng.normal(0, 1, n).round(1),
        "carrier": rng.choice(list("ABCDEFGH"), n, p=[.3, .2, .15, .1, .1, .08, .05, .02]),
        "origin": rng.choice(["EWR", "JFK", "LGA"], n), "flag": rng.random(n) < 0.1,
        "hour": rng.integers(5, 23, n).astype(str)})


KINDS = {c: ("numeric" if c in {"normal", "lognormal", "expo", "student", "uniform", "delay", "count", "rounded"}
             else "categorical") for c in population(1, 0).columns}


@pytest.fixture(scope="module")
def setup():
    pool = population(120_000, seed=1)
    reference = pool.iloc[:6000]
    profile = build_profile(reference, KINDS, fingerprint="pool-ref")
    return pool.iloc[6000:].reset_index(drop=True), profile, Calibrator(profile, resamples=200, seed=0)


def test_false_alarm_rate_on_no_drift_windows_is_at_most_one_percent(setup):
    rest, profile, calibrator = setup
    rng = np.random.default_rng(5)
    checks, alarms, alarms_without_floor, evidently_alarms = 200, 0, 0, 0
    for _ in range(checks):
        rows = int(rng.integers(900, 976))  # one grid size of the null cache
        window = rest.iloc[rng.choice(len(rest), rows, replace=False)]
        features = compare(profile, window)
        alarms += calibrator.verdict(features, rows).drift
        alarms_without_floor += calibrator.verdict(features, rows, effect_floors=NO_FLOORS).drift
        evidently_alarms += any(f.drifted for f in features)
    print(f"\nno-drift checks: {checks}; calibrated false alarms {alarms / checks:.2%}, significance alone "
          f"{alarms_without_floor / checks:.2%}; checks with any evidently column drifted "
          f"{evidently_alarms / checks:.2%}")
    assert alarms / checks <= 0.01
    assert alarms_without_floor / checks <= 0.01  # the calibration itself holds, not just the floor


def test_one_shifted_feature_is_enough(setup):
    rest, profile, calibrator = setup
    window = rest.iloc[:900].copy()
    window["delay"] = window["delay"] * 1.5 + 5  # later flights: one feature of twelve moves
    features = compare(profile, window)
    verdict = calibrator.verdict(features, len(window))
    assert verdict.drift and verdict.drifted_features == ["delay"]
    assert verdict.details["features"]["delay"]["p_value"] <= 0.01 / 12
    assert not evidently_verdict(features).drift  # 1 of 12 columns is below evidently's 50% share
    json.dumps(verdict.to_json(), allow_nan=False)


def test_huge_window_with_negligible_shift_is_not_drift():
    rng = np.random.default_rng(8)
    n = 200_000
    reference = pd.DataFrame({"x": rng.normal(0, 1, n)})
    current = pd.DataFrame({"x": rng.normal(0.03, 1, n)})  # 0.03 sd: real, but does not matter
    profile = build_profile(reference, {"x": "numeric"}, methods={"x": "ks"})
    [feature] = compare(profile, current)
    verdict = Calibrator(profile).verdict([feature], n)
    assert feature.p_value < 0.001 and feature.drifted  # KS calls it drift
    assert verdict.details["features"]["x"]["significant"]  # and it is not noise
    assert feature.effect < 0.1 and not verdict.drift  # but its size is below the floor


def test_nulls_are_cached_on_disk(setup, tmp_path):
    rest, profile, _ = setup
    small = build_profile(rest.iloc[:5000], {"expo": "numeric", "carrier": "categorical"}, fingerprint="small")
    features = compare(small, rest.iloc[5000:5900])
    first = Calibrator(small, cache_dir=tmp_path).verdict(features, 900)
    files = sorted(tmp_path.glob("null-*.npz"))
    assert len(files) == 1  # one file per window size holds every column's null
    stamps = [f.stat().st_mtime_ns for f in files]
    second = Calibrator(small, cache_dir=tmp_path).verdict(features, 900)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read, not recomputed
    assert second.details == first.details


def test_untested_features_are_left_out_of_the_family(setup):
    rest, profile, calibrator = setup
    features = compare(profile, rest.iloc[:900].drop(columns=["origin"]))
    verdict = calibrator.verdict(features, 900)
    assert "origin" not in verdict.details["features"] and len(verdict.details["features"]) == 11


def test_reference_in_time_order_learns_day_to_day_variation():
    """Each day has its own level; a new ordinary day is not drift, a day far outside the range is."""
    rng = np.random.default_rng(12)

    def days(count: int, spread: float = 0.4, offset: float = 0.0) -> pd.DataFrame:
        levels = rng.normal(offset, spread, count)
        return pd.DataFrame({"load": np.concatenate([rng.normal(level, 1, 300) for level in levels])})

    reference = days(200)
    profile = build_profile(reference, {"load": "numeric"}, fingerprint="days")
    by_runs, by_rows = Calibrator(profile, reference), Calibrator(profile)
    new_days = [days(1) for _ in range(40)]
    runs_alarms = sum(by_runs.verdict(compare(profile, day), 300).drift for day in new_days)
    rows_alarms = sum(by_rows.verdict(compare(profile, day), 300).drift for day in new_days)
    print(f"\nordinary new days flagged: {runs_alarms}/40 with runs of the reference, {rows_alarms}/40 with rows")
    assert runs_alarms <= 2 and rows_alarms >= 20
    unusual = days(1, spread=0.0, offset=2.0)
    assert by_runs.verdict(compare(profile, unusual), 300).drift
    with pytest.raises(ValueError, match="not the one the profile was built from"):
        Calibrator(profile, reference.iloc[:500]).verdict(compare(profile, unusual), 300)
