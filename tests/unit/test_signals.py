from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.types import EndpointRef, Severity, TelemetryBatch, Window
from monitors.signals.health import HealthEvaluator
from monitors.signals.performance import PerformanceEvaluator
from monitors.signals.quality import DataQualityEvaluator, quality_summary

WINDOW = Window(datetime(2013, 4, 1, tzinfo=UTC), datetime(2013, 4, 2, tzinfo=UTC))
KINDS = {"distance": "numeric", "carrier": "categorical"}


def batch(frame: pd.DataFrame, rejected=None, window=WINDOW) -> TelemetryBatch:
    return TelemetryBatch(EndpointRef("flights"), window, frame, rejected or {})


def by_name(findings):
    return {f.name: f for f in findings}


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    n = 2000
    score = rng.uniform(size=n)
    return pd.DataFrame({
        "distance": rng.uniform(100, 2000, n),
        "carrier": rng.choice(["AA", "UA", "DL"], n),
        "score": score,
        "delayed": (rng.uniform(size=n) < score).astype(int),  # a model with real skill
    })


def test_quality_counts_bad_rows_instead_of_crashing(reference):
    fitted = DataQualityEvaluator(KINDS, max_missing_rate=0.1, policy="threshold", min_rows=1).fit(reference)
    current = pd.DataFrame({
        "distance": [500, "far", None, None, 5000, 700, 800, 900, 1000, 1100],  # type error, 2 missing, 1 high
        "carrier": ["AA", "UA", "ZZ", None, "AA", "AA", "DL", "UA", "QQ", "AA"],
        "surprise": range(10),
    })
    found = by_name(fitted.evaluate(batch(current, rejected={"bad_json": 5})))
    assert found["missing_rate:distance"].statistic == pytest.approx(0.2)
    assert found["missing_rate:distance"].breached and found["missing_rate:distance"].severity is Severity.WARNING
    assert found["type_error_rate:distance"].statistic == pytest.approx(0.1)
    assert found["type_error_rate:distance"].details["examples"] == ["far"]
    assert found["out_of_range_rate:distance"].statistic == pytest.approx(0.1)
    assert found["unseen_rate:carrier"].statistic == pytest.approx(0.2)
    assert found["unseen_rate:carrier"].details["examples"] == ["QQ", "ZZ"]
    assert found["extra_columns"].details["columns"] == ["surprise"] and not found["extra_columns"].breached
    assert found["rejected_rate"].statistic == pytest.approx(5 / 15) and found["rejected_rate"].breached
    summary = quality_summary(list(found.values()))
    assert summary["rejected_rows"] == 5 and summary["unseen_rate"]["carrier"] == pytest.approx(0.2)


def test_quality_reports_missing_columns_and_is_clean_on_clean_data(reference):
    fitted = DataQualityEvaluator(KINDS).fit(reference)
    found = by_name(fitted.evaluate(batch(reference[["carrier"]].head(100))))
    assert found["missing_columns"].breached and found["missing_columns"].details["columns"] == ["distance"]
    clean = fitted.evaluate(batch(reference.head(500)))
    assert not [f.name for f in clean if f.breached]


def test_quality_treats_integer_categories_alike_whatever_the_dtype():
    ref = pd.DataFrame({"hour": [1, 2, 3, 4]})
    fitted = DataQualityEvaluator({"hour": "categorical"}, min_rows=1).fit(ref)
    current = pd.DataFrame({"hour": [1.0, 2.0, None, 3.0]})  # NaN upcasts ints to floats
    assert by_name(fitted.evaluate(batch(current)))["unseen_rate:hour"].statistic == 0.0


def test_health_error_rate_and_p95_latency():
    fitted = HealthEvaluator(max_error_rate=0.05, max_p95_latency_ms=200, policy="threshold").fit()
    frame = pd.DataFrame({"status_code": [200] * 90 + [500] * 6 + [400] * 4,
                          "latency_ms": list(range(100))})
    found = by_name(fitted.evaluate(batch(frame)))
    assert found["error_rate"].statistic == pytest.approx(0.06) and found["error_rate"].breached
    assert found["error_rate"].details["client_error_rate"] == pytest.approx(0.04)
    assert found["p95_latency_ms"].statistic == pytest.approx(94.05) and not found["p95_latency_ms"].breached
    assert found["error_rate"].severity is Severity.CRITICAL


def test_health_without_telemetry_columns_says_so():
    found = by_name(HealthEvaluator(min_rows=1).fit().evaluate(batch(pd.DataFrame({"x": [1, 2]}))))
    assert found["error_rate"].details["insufficient"] and not found["error_rate"].breached


def perf(**kw) -> PerformanceEvaluator:
    return PerformanceEvaluator("score", "score", "delayed", "binary", **kw)


def test_performance_drop_against_the_reference_alarms(reference):
    fitted = perf(max_drop=0.05).fit(reference)
    assert 0.7 < fitted.baseline < 0.9  # the reference's own AUC
    broken = reference.head(500).copy()
    broken["score"] = np.random.default_rng(1).uniform(size=500)  # the model lost its skill
    (finding,) = fitted.evaluate(batch(broken))
    assert finding.name == "auc" and finding.breached
    assert finding.statistic < finding.threshold == pytest.approx(fitted.baseline - 0.05)  # AUC: absolute
    assert set(finding.details["metrics"]) == {"auc", "accuracy", "f1", "log_loss"}
    (healthy,) = fitted.evaluate(batch(reference.tail(500)))
    assert not healthy.breached


def test_performance_with_few_labels_says_so_instead_of_alarming(reference):
    fitted = perf(min_labels=30).fit(reference)
    few = reference.head(200).copy()
    few.loc[few.index[20:], "delayed"] = np.nan  # labels not arrived yet
    few["score"] = 1 - few["score"]  # would be a disaster if judged
    (finding,) = fitted.evaluate(batch(few))
    assert not finding.breached and finding.details["insufficient"]
    assert "only 20 labelled rows" in finding.details["note"]


def test_performance_with_labels_of_the_wrong_type_is_a_finding_not_a_crash(reference):
    fitted = perf(min_labels=10).fit(reference)
    garbled = reference.head(100).assign(delayed=["yes", "no"] * 50)
    (finding,) = fitted.evaluate(batch(garbled))
    assert finding.details["insufficient"] and "cannot compute auc" in finding.details["note"]


def test_performance_drop_needs_the_effect_floor_and_to_be_beyond_noise(reference):
    """Default floor: 3 points of AUC. A 4-point drop on a week of labels pages; the same drop on a handful
    of labels (noise) and a significant 1-point drop on many do not."""
    from monitors.signals.performance import judge_drop

    fitted = perf().fit(reference)
    assert fitted.config.max_drop is None
    threshold, drop, breached = judge_drop("auc", 0.64, 0.68, None, margin=0.02)
    assert threshold == pytest.approx(0.65) and drop == pytest.approx(0.04) and breached
    assert not judge_drop("auc", 0.64, 0.68, None, margin=0.05)[2]  # beyond the floor, within the noise
    assert not judge_drop("auc", 0.67, 0.68, None, margin=0.002)[2]  # significant, too small to act on
    assert judge_drop("auc", 0.65, 0.68, None, margin=0.01)[2]  # exactly the floor counts
    # unbounded metrics: the floor is relative (5% of the baseline by default), and lower is better
    assert judge_drop("mae", 10.6, 10.0, None, margin=0.1)[2]
    assert not judge_drop("mae", 10.4, 10.0, None, margin=0.1)[2]
    assert judge_drop("mae", 10.4, 10.0, 0.03, margin=0.1)[0] == pytest.approx(10.3)
    (finding,) = fitted.evaluate(batch(reference.tail(500)))
    assert finding.details["effect_floor"] == pytest.approx(0.03) and not finding.breached


def test_performance_regression_floor_from_the_spec():
    ref = pd.DataFrame({"y": np.arange(100.0), "pred": np.arange(100.0) + 1})
    fitted = PerformanceEvaluator("pred", "value", "y", "regression", ceiling=1.5, max_drop=10).fit(ref)
    cur = pd.DataFrame({"y": np.arange(50.0), "pred": np.arange(50.0) + 2})
    (finding,) = fitted.evaluate(batch(cur, window=Window(WINDOW.start, WINDOW.start + timedelta(hours=1))))
    assert finding.name == "mae" and finding.statistic == pytest.approx(2.0)  # MAE: regression's primary
    assert finding.details["metrics"]["rmse"] == pytest.approx(2.0)
    assert finding.threshold == 1.5 and finding.breached and finding.details["reasons"] == ["spec limit"]


def test_performance_multiclass_is_judged_on_macro_f1_against_the_reference():
    rng = np.random.default_rng(3)
    truth = rng.choice(["bus", "car", "train"], 3000)

    def predicted(truth, right):  # the true class with probability `right`, else another one
        wrong = np.where(truth == "bus", "car", np.where(truth == "car", "train", "bus"))
        return np.where(rng.random(len(truth)) < right, truth, wrong)

    ref = pd.DataFrame({"y": truth, "pred": predicted(truth, 0.9)})
    fitted = PerformanceEvaluator("pred", "class", "y", "multiclass", max_drop=0.05).fit(ref)
    assert fitted.baseline == pytest.approx(0.9, abs=0.02)
    worse = pd.DataFrame({"y": truth[:1000], "pred": predicted(truth[:1000], 0.6)})
    (finding,) = fitted.evaluate(batch(worse))
    assert finding.name == "macro_f1" and finding.breached and finding.statistic == pytest.approx(0.6, abs=0.05)
    assert set(finding.details["metrics"]) == {"macro_f1", "accuracy"}
    same = pd.DataFrame({"y": truth[:1000], "pred": predicted(truth[:1000], 0.9)})
    (clean,) = fitted.evaluate(batch(same))
    assert not clean.breached


# --- drift (over monitors.drift) -------------------------------------------------------------------

def drifted(reference, n=1500, shift=0.0, seed=7):
    rng = np.random.default_rng(seed)
    cur = reference.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    cur["distance"] = rng.uniform(100, 2000, n) + shift
    return cur


def test_data_drift_per_feature_and_dataset_with_the_evidently_policy(reference):
    from scipy.stats import wasserstein_distance

    from monitors.signals.data_drift import DataDriftEvaluator, drift_summary

    fitted = DataDriftEvaluator(KINDS, policy="evidently", share=0.5).fit(reference)
    current = drifted(reference, shift=400)
    found = by_name(fitted.evaluate(batch(current)))
    distance = found["distance"]
    expected = wasserstein_distance(reference["distance"], current["distance"]) / np.std(reference["distance"])
    assert distance.method == "wasserstein" and distance.statistic == pytest.approx(expected, rel=1e-9)
    assert distance.threshold == 0.1 and distance.breached and distance.details["threshold_exceeded"]
    assert found["carrier"].method == "jensenshannon" and not found["carrier"].breached
    # evidently's rule: 1 of 2 features is a share of 0.5, which meets the 0.5 share
    assert found["dataset"].statistic == 0.5 and found["dataset"].breached
    summary = drift_summary(list(found.values()))
    assert summary["policy"] == "evidently" and summary["dataset_drift"] is True


def test_calibrated_policy_alerts_on_one_real_shift_but_not_on_a_negligible_one(reference, tmp_path):
    from monitors.signals.data_drift import DataDriftEvaluator

    kinds = {"distance": "numeric", "carrier": "categorical", "score": "numeric"}
    fitted = DataDriftEvaluator(kinds, resamples=60, calibration_dir=tmp_path).fit(reference)
    real = by_name(fitted.evaluate(batch(drifted(reference, shift=300))))
    assert real["dataset"].breached and real["distance"].breached and not real["carrier"].breached
    assert real["dataset"].details["policy"] == "calibrated"
    assert real["distance"].details["calibrated"]["p_value"] < 0.01  # against the reference's own variability
    tiny = by_name(fitted.evaluate(batch(drifted(reference, shift=5))))  # 1% of the feature's range
    assert not tiny["dataset"].breached and not tiny["distance"].breached
    empty = by_name(fitted.evaluate(batch(pd.DataFrame({"distance": [np.nan] * 50, "carrier": [None] * 50}))))
    assert empty["dataset"].details["insufficient"] and not empty["dataset"].breached  # no data is not "clean"


def test_profiles_come_from_the_cache_for_a_known_fingerprint(reference, tmp_path):
    from monitors.drift.profile import ProfileCache
    from monitors.signals.data_drift import DataDriftEvaluator

    cache = ProfileCache(tmp_path)
    first = DataDriftEvaluator(KINDS, policy="evidently", profiles=cache, fingerprint="ref-v1").fit(reference)
    assert list(tmp_path.glob("*.npz"))
    other = reference.assign(distance=reference["distance"] * 10)  # same fingerprint: must not be re-read
    second = DataDriftEvaluator(KINDS, policy="evidently", profiles=cache, fingerprint="ref-v1").fit(other)
    current = batch(drifted(reference))
    assert [f.statistic for f in first.evaluate(current)] == [f.statistic for f in second.evaluate(current)]


def test_prediction_drift_on_the_score_column(reference):
    from monitors.signals.prediction import PredictionDriftEvaluator

    fitted = PredictionDriftEvaluator("score", "score").fit(reference)
    shifted = reference.head(1500).assign(score=lambda f: f["score"] ** 4)  # the model got pessimistic
    (finding,) = fitted.evaluate(batch(shifted))
    assert finding.signal == "prediction_drift" and finding.breached and finding.method == "wasserstein"
    (same,) = fitted.evaluate(batch(reference.tail(1500)))
    assert not same.breached
    (none,) = PredictionDriftEvaluator("score", "score").fit(reference.drop(columns="score")).evaluate(batch(shifted))
    assert none.details["insufficient"] and not none.breached


# --- calibrated by default: judged against the reference's own windows ---------------------------------

@pytest.fixture(scope="module")
def daily_reference():
    """90 days of 200 rows: a sensor that is down on some days (about 10% missing overall), and a score
    whose level moves from day to day with the weather."""
    rng = np.random.default_rng(3)
    days, per_day = 90, 200
    down = rng.uniform(size=days) < 0.1
    missing = np.repeat(np.where(down, 0.8, 0.02), per_day) > rng.uniform(size=days * per_day)
    pressure = rng.normal(1015, 8, days * per_day)
    pressure[missing] = np.nan
    level = np.repeat(rng.normal(0, 0.4, days), per_day)
    score = 1 / (1 + np.exp(-(rng.normal(size=days * per_day) + level - 1)))
    return pd.DataFrame({"pressure": pressure, "carrier": rng.choice(["AA", "UA", "DL"], days * per_day),
                         "score": score})


def quality_window(reference, missing_share: float, rows=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = reference.sample(rows, random_state=seed).reset_index(drop=True)
    frame["pressure"] = rng.normal(1015, 8, rows)
    frame.loc[rng.uniform(size=rows) < missing_share, "pressure"] = np.nan
    return frame


def test_calibrated_quality_knows_the_references_own_bad_days(daily_reference):
    kinds = {"pressure": "numeric", "carrier": "categorical"}
    fitted = DataQualityEvaluator(kinds).fit(daily_reference)
    # a day with 40% missing: the raw 10% limit would page; the reference had days like it
    usual = by_name(fitted.evaluate(batch(quality_window(daily_reference, 0.4))))["missing_rate:pressure"]
    assert not usual.breached and usual.details["calibrated"]["p_value"] > 0.01
    assert usual.method == "calibrated" and usual.details["calibrated"]["null"] == "runs"
    raw = DataQualityEvaluator(kinds, policy="threshold").fit(daily_reference)
    assert by_name(raw.evaluate(batch(quality_window(daily_reference, 0.4))))["missing_rate:pressure"].breached
    # a whole day with every value missing never happened in the reference: that is news
    broken = by_name(fitted.evaluate(batch(quality_window(daily_reference, 1.0))))["missing_rate:pressure"]
    assert broken.breached and broken.details["calibrated"]["significant"]
    assert broken.details["calibrated"]["effect"] >= broken.details["calibrated"]["floor"] == 0.05


def test_calibrated_quality_needs_an_effect_beyond_the_floor(daily_reference):
    kinds = {"pressure": "numeric", "carrier": "categorical"}
    fitted = DataQualityEvaluator(kinds).fit(daily_reference)
    window = quality_window(daily_reference, 0.0, rows=2000)
    window.loc[:39, "carrier"] = "ZZ"  # 2% of rows with a new carrier: significant, but below the 5% floor
    found = by_name(fitted.evaluate(batch(window)))["unseen_rate:carrier"]
    assert found.details["calibrated"]["significant"] and not found.breached
    window.loc[:399, "carrier"] = "ZZ"  # 20%: an upstream change worth a look
    assert by_name(fitted.evaluate(batch(window)))["unseen_rate:carrier"].breached


def test_empty_and_tiny_windows_are_insufficient_data_not_missing_columns(daily_reference):
    kinds = {"pressure": "numeric", "carrier": "categorical"}
    fitted = DataQualityEvaluator(kinds).fit(daily_reference)
    for frame in (pd.DataFrame(), daily_reference.head(5)):
        found = fitted.evaluate(batch(frame))
        assert not any(f.breached for f in found)
        rows = by_name(found)["rows"]
        assert rows.details["insufficient"] and "insufficient data" in rows.details["note"]


def test_calibrated_health_needs_more_than_noise_to_breach():
    fitted = HealthEvaluator(max_error_rate=0.05, max_p95_latency_ms=200).fit()
    few = pd.DataFrame({"status_code": [200] * 37 + [500] * 3, "latency_ms": [50] * 37 + [900] * 3})
    found = by_name(fitted.evaluate(batch(few)))
    assert found["error_rate"].statistic == pytest.approx(0.075) and not found["error_rate"].breached
    steady = pd.DataFrame({"status_code": [200] * 1840 + [500] * 160, "latency_ms": [50] * 1840 + [900] * 160})
    found = by_name(fitted.evaluate(batch(steady)))
    assert found["error_rate"].breached and found["error_rate"].p_value < 0.001
    assert found["p95_latency_ms"].breached  # 8% of requests over the p95 limit, well beyond 5%
    assert by_name(fitted.evaluate(batch(steady.head(10))))["requests"].details["insufficient"]


def test_calibrated_prediction_drift_knows_the_scores_own_daily_swings(daily_reference):
    from monitors.signals.prediction import PredictionDriftEvaluator

    # the last day of the reference holds its own level: like a new day's weather, not drift
    day = daily_reference.iloc[-200:]
    (raw,) = PredictionDriftEvaluator("score", "score", policy="threshold").fit(daily_reference).evaluate(batch(day))
    fitted = PredictionDriftEvaluator("score", "score", resamples=60).fit(daily_reference)
    (calibrated,) = fitted.evaluate(batch(day))
    assert raw.breached and not calibrated.breached
    assert calibrated.details["calibrated"]["p_value"] > 0.01 and calibrated.details["policy"] == "calibrated"
    worse = day.assign(score=lambda f: (f["score"] + 0.5).clip(0, 1))  # the model turned alarmist
    (shifted,) = fitted.evaluate(batch(worse))
    assert shifted.breached and shifted.details["calibrated"]["drifted"]
