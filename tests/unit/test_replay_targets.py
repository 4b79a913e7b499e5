"""The issue's targets are measured, not assumed: each function on a small history with a known answer."""
import numpy as np
import pandas as pd
import pytest

from replay.targets import auc_difference, incident_stats, label_free_error, weekly_recall

START, END = pd.Timestamp("2013-04-01", tz="UTC"), pd.Timestamp("2013-05-27", tz="UTC")


def served(skill_by_week):
    """A day of 400 flights every day; the score's skill (how far apart the classes are) set per week."""
    rng = np.random.default_rng(0)
    parts = []
    for i, skill in enumerate(skill_by_week):
        n = 400 * 7
        label = rng.uniform(size=n) < 0.3
        times = START + pd.Timedelta(days=7 * i) + pd.to_timedelta(rng.uniform(0, 7 * 86400, n), unit="s")
        parts.append(pd.DataFrame({"time": times, "label": label.astype(int),
                                   "score": rng.normal(size=n) + skill * label}))
    return pd.concat(parts, ignore_index=True)


def test_weekly_recall_counts_the_weeks_of_lost_auc_inside_an_incident():
    frame = served([1.0, 1.0, 0.3, 0.3, 1.0, 1.0, 0.3, 1.0])  # weeks 2, 3 and 6 lose a lot of AUC
    baseline = pd.Series([0.76], index=[START])
    incidents = [{"started_window": {"start": "2013-04-14T00:00:00Z"}, "opened_window": {"start": "2013-04-16"},
                  "resolved_window": {"start": "2013-04-28T00:00:00Z", "end": "2013-04-29T00:00:00Z"}}]
    found = weekly_recall(frame, baseline, incidents, start=START, end=END)
    assert found["weeks"] == 8 and found["lost_weeks"] == 3 and found["covered"] == 2
    assert found["recall"] == pytest.approx(2 / 3) and found["missed"] == ["2013-05-13"]
    still_open = [{"opened_window": {"start": "2013-05-14T00:00:00Z"}, "resolved_window": None}]
    assert weekly_recall(frame, baseline, incidents + still_open, start=START, end=END)["recall"] == 1.0


def test_notifications_per_incident_keep_the_loops_own_messages_apart():
    kinds = ["incident.opened", "incident.resolved", "incident.opened", "retrain.started", "model.promoted"]
    stats = incident_stats([{}, {}], [{"kind": k} for k in kinds])
    assert stats["notifications_per_incident"] == 1.5 and stats["loop_notifications"] == 2
    assert stats["notifications_by_kind"]["incident.opened"] == 2


def test_label_free_error_over_the_months_both_know():
    error = label_free_error({"2013-04": 0.70, "2013-05": 0.66, "2013-06": None},
                             {"2013-04": 0.68, "2013-05": 0.70, "2013-06": 0.71})
    assert error["mae"] == pytest.approx(0.03) and error["months"] == 2


def test_the_difference_between_strategies_carries_an_interval_that_covers_it():
    frame = served([1.0] * 8)
    rng = np.random.default_rng(1)
    frame["better"] = frame["score"] + 0.5 * frame["label"]  # a strategy with more skill
    frame["noisy"] = frame["score"] + rng.normal(0, 0.01, len(frame))  # the same strategy, give or take
    clear = auc_difference(frame, "better", "score", replicates=60)
    assert clear["low"] > 0 and clear["low"] <= clear["difference"] <= clear["high"]
    same = auc_difference(frame, "noisy", "score", replicates=60)
    assert same["low"] < 0.005 and same["high"] > -0.005 and same["high"] - same["low"] < 0.02


def test_the_timeline_tells_what_happened_in_sentences_with_numbers_and_zooms():
    from datetime import UTC, datetime, timedelta

    from core.events import new_event
    from replay.timeline import Timeline

    t0 = datetime(2013, 4, 9, tzinfo=UTC)
    incident = {"monitor": "flights-delay", "endpoint": "flights", "incident_id": "i-1", "signal": "performance",
                "signals": ["data_drift", "performance"], "severity": "critical", "windows": 2,
                "window_end": "2013-04-09T00:00:00Z",
                "highlights": ["data_drift (warning, 2 window(s)): temp: 0.31 (effect 0.31 >= floor 0.1, p 0.005)"]}
    gate = {"accepted": True, "reasons": ["auc improves by +0.0060 and no slice regresses beyond 0.03"],
            "numbers": {"challenger": 0.7112, "champion": 0.7051, "holdout_rows": 5180}}
    candidate = {"name": "flights-delay", "version": "2"}
    events = [new_event("mlops.incident.changed.v1", {**incident, "status": "opened"}, id="e1", time=t0),
              new_event("mlops.challenger.accepted.v1", {"run_id": "r", "endpoint": "flights", "candidate": candidate,
                                                         "gate": gate}, id="e2", time=t0 + timedelta(days=1)),
              new_event("mlops.canary.started.v1", {"run_id": "r", "endpoint": "flights", "candidate": candidate,
                                                    "traffic": {"blue": 80, "green": 20},
                                                    "bake_until": "2013-04-11T00:00:00Z"}, id="e3",
                        time=t0 + timedelta(days=1)),
              new_event("mlops.incident.changed.v1", {**incident, "status": "resolved"}, id="e4",
                        time=t0 + timedelta(days=5))]
    timeline = Timeline("flights-delay", [], events)
    text = [detail for _, _, detail in timeline.entries()]
    assert "temp: 0.31 (effect 0.31 >= floor 0.1" in text[0] and text[0].startswith("[critical] incident opened")
    assert "accepted: auc improves by +0.0060" in text[1] and "challenger 0.711, champion 0.705 on 5180" in text[1]
    assert text[2] == ("canary flights-delay:2 took its share of traffic (blue 80%, green 20%) until "
                       "2013-04-11T00:00:00Z")
    assert text[3].startswith("incident resolved on flights-delay")
    page = timeline.interactive({"managed": {"monthly_metric": {"2013-04": 0.64}, "retrains": 1}})
    assert "plotly" in page.lower() and "managed (1 retrains)" in page
