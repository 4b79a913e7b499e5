from datetime import datetime, timedelta, timezone

import pytest

from retrain.gate import EvalReport, GatePolicy, decide
from retrain.policy import RetrainPolicy, enough_rows, last_data_end, may_start, rejections_since_promotion


def report(auc, rows=1000, slices=None, log_loss=0.5):
    return EvalReport({"auc": auc, "rows": rows, "log_loss": log_loss}, slices or {})


POLICY = GatePolicy(min_improvement=0.005, max_slice_regression=0.02, min_holdout_rows=200, min_slice_rows=50)


def test_better_challenger_is_accepted_with_its_numbers():
    decision = decide(report(0.70), report(0.72), POLICY)
    assert decision.accepted
    assert decision.numbers["improvement"] == pytest.approx(0.02)
    assert decision.numbers["champion"] == 0.70 and decision.numbers["challenger"] == 0.72


def test_worse_or_barely_better_challenger_is_rejected():
    assert not decide(report(0.72), report(0.70), POLICY).accepted
    barely = decide(report(0.70), report(0.703), POLICY)
    assert not barely.accepted
    assert "less than the required" in barely.reasons[0]


def test_a_slice_regression_beyond_tolerance_rejects_an_overall_winner():
    champion = report(0.70, slices={"origin=JFK": {"auc": 0.75, "rows": 300},
                                    "origin=EWR": {"auc": 0.70, "rows": 300}})
    challenger = report(0.73, slices={"origin=JFK": {"auc": 0.72, "rows": 300},
                                      "origin=EWR": {"auc": 0.80, "rows": 300}})
    decision = decide(champion, challenger, POLICY)
    assert not decision.accepted
    assert any("origin=JFK" in r for r in decision.reasons)
    assert decision.numbers["slices"]["origin=JFK"] == pytest.approx(0.03)


def test_small_slices_do_not_veto():
    champion = report(0.70, slices={"origin=LGA": {"auc": 0.9, "rows": 10}})
    challenger = report(0.73, slices={"origin=LGA": {"auc": 0.5, "rows": 10}})
    assert decide(champion, challenger, POLICY).accepted


def test_no_champion_accepts_and_too_small_holdout_rejects():
    assert decide(None, report(0.6), POLICY).accepted
    small = decide(report(0.5), report(0.9, rows=50), POLICY)
    assert not small.accepted and "fewer than 200" in small.reasons[0]


def test_lower_is_better_metrics_are_compared_the_right_way():
    policy = GatePolicy(primary_metric="log_loss", min_improvement=0.01, min_holdout_rows=0)
    assert decide(report(0.7, log_loss=0.50), report(0.7, log_loss=0.45), policy).accepted
    assert not decide(report(0.7, log_loss=0.45), report(0.7, log_loss=0.50), policy).accepted


def test_reports_round_trip_through_the_evaluate_steps_flat_metrics():
    flat = {"challenger/auc": 0.7, "challenger/rows": 500.0, "challenger/slice/origin/JFK/auc": 0.8,
            "challenger/slice/dest/A%2FB/rows": 3.0, "champion/auc": 0.6, "holdout_rows": 500.0}
    rep = EvalReport.from_flat(flat, "challenger")
    assert rep.overall == {"auc": 0.7, "rows": 500.0} and rep.rows == 500
    assert rep.slices == {"origin=JFK": {"auc": 0.8}, "dest=A/B": {"rows": 3.0}}
    assert EvalReport.from_flat(flat, "champion").overall == {"auc": 0.6}
    assert EvalReport.from_flat({"challenger/auc": 0.7}, "champion") is None


NOW = datetime(2013, 6, 1, tzinfo=timezone.utc)


def run(run_id, state, submitted=None, window_end=None):
    doc = {"run_id": run_id, "state": state}
    if submitted:
        doc["submitted_at"] = submitted.isoformat()
    if window_end:
        doc["window"] = {"start": (window_end - timedelta(days=30)).isoformat(), "end": window_end.isoformat()}
    return doc


def test_policy_blocks_while_a_run_is_active_and_names_it():
    decision = may_start([run("a", "canary", NOW - timedelta(days=30))], NOW, RetrainPolicy())
    assert not decision.allowed and decision.active_run == "a"
    assert may_start([run("a", "requested")], NOW, RetrainPolicy(), run_id="a").allowed


def test_policy_cooldown_and_daily_cap():
    policy = RetrainPolicy(cooldown=timedelta(days=7), max_per_day=1)
    recent = [run("a", "promoted", NOW - timedelta(days=3))]
    assert "cooldown" in may_start(recent, NOW, policy).reasons[0]
    assert may_start([run("a", "promoted", NOW - timedelta(days=8))], NOW, policy).allowed
    capped = may_start([run("a", "rejected", NOW - timedelta(hours=2))], NOW,
                       RetrainPolicy(cooldown=timedelta(0), max_per_day=1))
    assert not capped.allowed and "daily cap" in capped.reasons[0]
    assert may_start([run("a", "skipped")], NOW, policy).allowed  # a skipped request never ran


def test_drifts_cooldown_backs_off_per_challenger_not_promoted_since_the_last_promotion():
    """Rejected and rolled-back challengers say a retrain now does not pay: drift waits 7, 14, 28, at most 56
    days; a promotion resets it; failed and skipped runs neither count nor reset; a person's request is not held."""
    policy = RetrainPolicy(cooldown=timedelta(days=7))
    days = [NOW - timedelta(days=d) for d in (60, 40, 20)]
    history = [run("a", "promoted", days[0]), run("b", "rejected", days[1]), run("c", "failed", days[1]),
               run("d", "rolled_back", days[2]), run("e", "skipped")]
    assert rejections_since_promotion(history) == 2
    held = may_start(history, NOW, policy, drift=True)  # 20 days since the last one, 28 needed
    assert not held.allowed
    assert "less than 28 days" in held.reasons[0] and "2 challenger(s) rejected or rolled back" in held.reasons[0]
    assert may_start(history, NOW, policy).allowed  # a request by a person: the plain cooldown
    assert may_start(history, NOW + timedelta(days=8), policy, drift=True).allowed
    promoted = [*history, run("g", "promoted", NOW - timedelta(days=8))]
    assert rejections_since_promotion(promoted) == 0 and may_start(promoted, NOW, policy, drift=True).allowed
    assert may_start(history, NOW, RetrainPolicy(cooldown=timedelta(days=7), rejection_backoff=1), drift=True).allowed
    many = [*history, *(run(f"r{i}", "rejected", days[2] + timedelta(days=i)) for i in range(1, 6))]
    assert rejections_since_promotion(many) == 7
    assert not may_start(many, NOW + timedelta(days=40), policy, drift=True).allowed  # 55 days after the last
    assert may_start(many, NOW + timedelta(days=42), policy, drift=True).allowed  # 57: the cap is 56 days, not 896
    with pytest.raises(ValueError, match="at least 1"):
        RetrainPolicy(rejection_backoff=0.5)


def test_policy_needs_enough_new_labelled_rows():
    assert not enough_rows(10, RetrainPolicy(min_new_labelled_rows=100)).allowed
    assert enough_rows(100, RetrainPolicy(min_new_labelled_rows=100)).allowed
    end = NOW - timedelta(days=10)
    assert last_data_end([run("a", "promoted", NOW - timedelta(days=9), end), run("b", "skipped")]) == end


def test_each_task_is_gated_on_its_own_primary_metric_in_the_right_direction():
    multi = GatePolicy(min_improvement=0.01, min_holdout_rows=10)
    better = decide(EvalReport({"macro_f1": 0.60, "rows": 100}), EvalReport({"macro_f1": 0.65, "rows": 100}), multi,
                    "multiclass")
    assert better.accepted and better.numbers["policy"]["primary_metric"] == "macro_f1"
    assert not decide(EvalReport({"macro_f1": 0.65, "rows": 100}), EvalReport({"macro_f1": 0.60, "rows": 100}),
                      multi, "multiclass").accepted
    # regression: MAE, lower is better, compared relative to the champion's error (minutes or dollars alike)
    champion = EvalReport({"mae": 20.0, "rmse": 30.0, "rows": 500})
    lower = decide(champion, EvalReport({"mae": 19.0, "rmse": 31.0, "rows": 500}), multi, "regression")
    assert lower.accepted and lower.numbers["improvement"] == pytest.approx(0.05)
    higher = decide(champion, EvalReport({"mae": 19.9, "rmse": 29.0, "rows": 500}), multi, "regression")
    assert not higher.accepted and "-0.50%" not in higher.reasons[0] and "+0.50%" in higher.reasons[0]
    assert not decide(champion, EvalReport({"mae": 21.0, "rows": 500}), multi, "regression").accepted


def test_a_regression_slice_that_gets_worse_by_more_than_the_share_allowed_rejects():
    policy = GatePolicy(min_improvement=0.01, max_slice_regression=0.05, min_holdout_rows=10, min_slice_rows=10)
    champion = EvalReport({"mae": 20.0, "rows": 500}, {"origin=JFK": {"mae": 10.0, "rows": 100}})
    challenger = EvalReport({"mae": 18.0, "rows": 500}, {"origin=JFK": {"mae": 11.0, "rows": 100}})
    decision = decide(champion, challenger, policy, "regression")
    assert not decision.accepted and decision.numbers["slices"]["origin=JFK"] == pytest.approx(0.10)
    assert "origin=JFK" in decision.reasons[0] and "10.00%" in decision.reasons[0]


def test_a_primary_metric_the_task_lacks_is_refused():
    with pytest.raises(ValueError, match="not a regression metric"):
        GatePolicy(primary_metric="auc").for_task("regression")
    assert GatePolicy().for_task("binary").primary_metric == "auc"
    assert GatePolicy(primary_metric="log_loss").for_task("multiclass").primary_metric == "log_loss"
