"""The calibrated verdict's false alarms and detection power, and its null against exact resampling.

    python -m benchmarks.calibration [--checks 1000]

A reference of 6,000 rows of twelve features (skewed, heavy-tailed, discrete, rare categories), and windows
of 500 to 2,000 rows drawn from the same population (no drift): the share of checks that alarm is the
false-alarm rate, with the effect floors (as deployed) and without (significance alone), beside the share of
checks where evidently flags at least one column. Then the same windows with one numeric feature moved by
0.2 of its standard deviation: the share the calibrated verdict detects, beside evidently's
half-of-the-columns rule. The nulls are those checks use (contiguous runs of the reference, as the service
and the check command do). Last, the binned null's quantiles against exact resampling (scipy-equal
Wasserstein distances of drawn windows) per numeric feature and window size. One JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

REFERENCE_ROWS = 6000
NUMERIC = ("normal", "lognormal", "expo", "student", "uniform", "delay", "count", "rounded")
NO_FLOORS = {"wasserstein": 0.0, "jensenshannon": 0.0}


def population(n: int, seed: int):
    """Twelve features of assorted shapes: skewed, heavy-tailed, discrete, rare categories."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "normal": rng.normal(10, 2, n), "lognormal": rng.lognormal(0, 1, n), "expo": rng.exponential(3, n),
        "student": rng.standard_t(4, n), "uniform": rng.uniform(0, 1, n), "delay": rng.gamma(0.7, 20, n),
        "count": rng.poisson(4, n).astype(float), "rounded": rng.normal(0, 1, n).round(1),
        "carrier": rng.choice(list("ABCDEFGH"), n, p=[.3, .2, .15, .1, .1, .08, .05, .02]),
        "origin": rng.choice(["EWR", "JFK", "LGA"], n), "flag": rng.random(n) < 0.1,
        "hour": rng.integers(5, 23, n).astype(str)})


def verdicts(checks: int, seed: int = 5) -> dict:
    from monitors.drift.engine import compare
    from monitors.drift.profile import build_profile
    from monitors.drift.verdict import Calibrator, evidently_verdict

    pool = population(REFERENCE_ROWS + 200_000, seed=1)
    reference, rest = pool.iloc[:REFERENCE_ROWS], pool.iloc[REFERENCE_ROWS:].reset_index(drop=True)
    kinds = {c: "numeric" if c in NUMERIC else "categorical" for c in pool.columns}
    profile = build_profile(reference, kinds, fingerprint="benchmark")
    calibrator = Calibrator(profile, reference)
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(("alarms", "alarms_without_floor", "evidently_any", "detected", "named",
                            "evidently_share"), 0)
    started = time.perf_counter()
    for _ in range(checks):
        rows = int(rng.integers(500, 2001))
        window = rest.iloc[rng.choice(len(rest), rows, replace=False)]
        features = compare(profile, window)
        counts["alarms"] += calibrator.verdict(features, rows).drift
        counts["alarms_without_floor"] += calibrator.verdict(features, rows, effect_floors=NO_FLOORS).drift
        counts["evidently_any"] += any(f.drifted for f in features)
        moved = NUMERIC[int(rng.integers(len(NUMERIC)))]
        window = window.assign(**{moved: window[moved] + 0.2 * profile.columns[moved].std})
        features = compare(profile, window)
        verdict = calibrator.verdict(features, rows)
        counts["detected"] += verdict.drift
        counts["named"] += moved in verdict.drifted_features
        counts["evidently_share"] += evidently_verdict(features).drift
    return {"checks": checks, "reference_rows": REFERENCE_ROWS, "window_rows": "500-2000",
            "false_alarm_rate": counts["alarms"] / checks,
            "false_alarm_rate_significance_alone": counts["alarms_without_floor"] / checks,
            "evidently_any_column_rate": counts["evidently_any"] / checks, "shift_sd": 0.2,
            "detected": counts["detected"] / checks, "detected_with_the_moved_feature": counts["named"] / checks,
            "evidently_share_rule_detected": counts["evidently_share"] / checks,
            "seconds": round(time.perf_counter() - started, 1)}


def null_agreement(draws: int) -> dict:
    """Largest relative difference of the binned null's 50th/90th/99th percentiles from exact resampling."""
    from monitors.drift import calibration
    from monitors.drift.profile import build_profile
    from monitors.drift.stattests import wasserstein

    reference = population(REFERENCE_ROWS * 10, seed=2)
    worst = {"q50": 0.0, "q90": 0.0, "q99": 0.0}
    for name in NUMERIC:
        col = build_profile(reference[[name]], {name: "numeric"}).columns[name]
        for size in (100, 1000, 10000):
            rng = np.random.default_rng(size)
            exact = np.array([wasserstein(col.values, np.sort(col.values[rng.integers(0, col.rows, size)]),
                                          col.prefix) for _ in range(draws)]) / col.std
            binned = calibration.simulate(col, size, draws, np.random.default_rng(size + 1))
            diff = np.abs(np.quantile(binned, (0.5, 0.9, 0.99)) / np.quantile(exact, (0.5, 0.9, 0.99)) - 1)
            worst = {key: max(worst[key], float(d)) for key, d in zip(worst, diff, strict=True)}
    return {"null_draws": draws, "null_reference_rows": REFERENCE_ROWS * 10,
            "null_max_rel_diff": {key: round(value, 4) for key, value in worst.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000, help="no-drift checks (and as many shifted ones)")
    parser.add_argument("--null-draws", type=int, default=4000, help="draws per null in the agreement check")
    args = parser.parse_args(argv)
    print(json.dumps({**verdicts(args.checks), **null_agreement(args.null_draws)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
