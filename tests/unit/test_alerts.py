from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.records import INCIDENT
from core.state_sqlite import SqliteStateStore
from core.types import EndpointRef, Finding, Severity, TelemetryBatch, Window
from monitors.alerts import ALERT_STATE, AlertPolicy
from monitors.spec import AlertSpec

START = datetime(2013, 4, 1, tzinfo=UTC)


def window(i: int) -> Window:
    return Window(START + timedelta(hours=i), START + timedelta(hours=i + 1))


def drift(breached: bool, feature: str = "distance", severity=Severity.WARNING) -> list[Finding]:
    return [Finding("data_drift", feature, 0.3 if breached else 0.01, 0.1, breached, severity, method="wasserstein"),
            Finding("data_drift", "dataset", 1.0 if breached else 0.0, None, breached, method="calibrated")]


@pytest.fixture
def store(tmp_path):
    s = SqliteStateStore(tmp_path / "state.sqlite")
    yield s
    s.close()


def run(policy, store, pattern: str, first: int = 0, findings=drift):
    """Feed one window per character ('x' breaching, '.' clean); returns (window index, status) per change."""
    out = []
    for i, mark in enumerate(pattern, start=first):
        for change in policy.apply(store, "m", window(i), findings(mark == "x"), check_id=f"c{i}"):
            out.append((i, change.status))
    return out


def test_an_incident_opens_after_n_consecutive_breaching_windows_and_resolves_after_m_clean(store):
    policy = AlertPolicy(AlertSpec(consecutive=3, resolve_after=3))
    assert run(policy, store, "xx.xxxxx.x..x...") == [(5, "opened"), (15, "resolved")]
    (key, doc), = store.list(INCIDENT)
    assert doc.data["status"] == "resolved" and doc.data["windows"] == 7  # 3 to open + 4 confirming
    assert doc.data["opened_window"] == window(5).to_json() and doc.data["resolved_window"] == window(15).to_json()
    assert doc.data["started_window"] == window(3).to_json()  # the episode began with the streak
    assert [h["status"] for h in doc.data["history"]] == ["opened", "resolved"]


def test_a_flapping_signal_neither_opens_nor_closes_an_incident(store):
    policy = AlertPolicy(AlertSpec(consecutive=2, resolve_after=3))
    assert run(policy, store, "x.x.x.x.x.x.") == []
    assert run(policy, store, "xx.x.x.x.xx.x...", first=20) == [(21, "opened"), (35, "resolved")]


def test_resolve_after_must_be_at_least_consecutive():
    with pytest.raises(ValueError, match="resolve_after"):
        AlertSpec(consecutive=3, resolve_after=2)


def test_cooldown_holds_back_a_new_episode_then_a_second_incident_opens(store):
    policy = AlertPolicy(AlertSpec(consecutive=1, resolve_after=1, cooldown=timedelta(hours=3)))
    changes = run(policy, store, "x.xxxxx")
    # resolved at the end of window 1 (02:00): windows starting before 05:00 cannot open one
    assert changes == [(0, "opened"), (1, "resolved"), (5, "opened")]
    assert len(store.list(INCIDENT)) == 2


def test_updated_only_when_a_signal_joins_or_the_severity_rises(store):
    policy = AlertPolicy(AlertSpec(consecutive=1, resolve_after=1))
    perf = [Finding("performance", "auc", 0.6, 0.7, True, Severity.CRITICAL)]
    seq = [drift(True), drift(True, "carrier"), drift(True) + perf, drift(True) + perf, drift(True)]
    statuses = [[c.status for c in policy.apply(store, "m", window(i), f, check_id=f"c{i}")]
                for i, f in enumerate(seq)]
    assert statuses == [["opened"], [], ["updated"], [], []]
    (_, doc), = store.list(INCIDENT)
    assert doc.data["signals"] == ["data_drift", "performance"] and doc.data["severity"] == "critical"
    assert doc.data["signal"] == "performance"  # the most severe facet leads
    facets = doc.data["facets"]
    assert facets["data_drift"]["windows"] == 5 and facets["performance"]["windows"] == 2
    assert not facets["performance"]["breaching"] and facets["data_drift"]["breached"] == ["dataset", "distance"]
    assert doc.data["windows"] == 5 and len(store.list(INCIDENT)) == 1  # one incident, signals as facets


def test_reapplying_a_window_returns_the_same_changes_and_older_windows_are_ignored(store):
    policy = AlertPolicy(AlertSpec(consecutive=1))
    first = policy.apply(store, "m", window(5), drift(True), check_id="c5")
    again = policy.apply(store, "m", window(5), drift(True), check_id="c5")
    assert [c.to_json() for c in again] == [c.to_json() for c in first] and first[0].status == "opened"
    assert policy.apply(store, "m", window(4), drift(False), check_id="c4") == []
    assert len(store.list(INCIDENT)) == 1


def test_signals_share_one_episode_and_no_data_keeps_the_streak(store):
    policy = AlertPolicy(AlertSpec(consecutive=2, resolve_after=2, severity={"health": Severity.CRITICAL}))
    unknown = [Finding("health", "error_rate", None, 0.05, False, details={"insufficient": True})]
    bad = [Finding("health", "error_rate", 0.2, 0.05, True)]
    assert policy.apply(store, "m", window(0), bad + drift(False), check_id="c0") == []
    assert policy.apply(store, "m", window(1), unknown, check_id="c1") == []  # no data: streak of 1 kept
    (change,) = policy.apply(store, "m", window(2), drift(True), check_id="c2")  # another signal, same episode
    assert (change.status, change.severity, change.signal) == ("opened", Severity.CRITICAL, "health")
    assert change.signals == ["data_drift", "health"] and change.incident["windows"] == 2
    assert change.evidence[0]["name"] == "distance" and change.notify


def test_a_drift_check_without_values_is_no_data(store):
    from monitors.signals.data_drift import DataDriftEvaluator

    policy = AlertPolicy(AlertSpec(consecutive=2, resolve_after=2))
    ref = pd.DataFrame({"x": np.random.default_rng(0).normal(size=500)})
    fitted = DataDriftEvaluator({"x": "numeric"}, policy="evidently").fit(ref)
    shifted = TelemetryBatch(EndpointRef("e"), window(0), pd.DataFrame({"x": ref["x"] + 3}))
    empty = TelemetryBatch(EndpointRef("e"), window(1), pd.DataFrame({"x": [np.nan] * 20}))
    assert policy.apply(store, "m", window(0), fitted.evaluate(shifted), check_id="c0") == []
    assert policy.apply(store, "m", window(1), fitted.evaluate(empty), check_id="c1") == []  # keeps the streak
    shifted2 = TelemetryBatch(EndpointRef("e"), window(2), pd.DataFrame({"x": ref["x"] + 3}))
    (change,) = policy.apply(store, "m", window(2), fitted.evaluate(shifted2), check_id="c2")
    assert change.status == "opened"


def test_incident_ids_are_deterministic_per_monitor_and_window(tmp_path):
    ids = []
    for name in ("a", "b"):
        store = SqliteStateStore(tmp_path / f"{name}.sqlite")
        (change,) = AlertPolicy(AlertSpec(consecutive=1)).apply(store, "m", window(0), drift(True), check_id="c0")
        ids.append(change.incident_id)
        store.close()
    assert ids[0] == ids[1]


class RacingStore:
    """A real store where another writer touches the alert tracker just before our first replace of it."""

    def __init__(self, inner):
        self.inner, self.raced = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def replace(self, kind, key, data, etag):
        if kind == ALERT_STATE and not self.raced:
            self.raced = True
            current = self.inner.get(kind, key)
            self.inner.replace(kind, key, current.data, current.etag)  # same content, new etag
        return self.inner.replace(kind, key, data, etag)


def test_a_lost_race_on_the_tracker_is_retried_without_counting_twice(store):
    policy = AlertPolicy(AlertSpec(consecutive=1))
    policy.apply(store, "m", window(0), drift(True), check_id="c0")  # opened
    racing = RacingStore(store)
    perf = [Finding("performance", "auc", 0.6, 0.7, True, Severity.CRITICAL)]
    (change,) = policy.apply(racing, "m", window(1), drift(True) + perf, check_id="c1")
    assert racing.raced and change.status == "updated"
    (_, doc), = store.list(INCIDENT)
    assert doc.data["windows"] == 2 and [h["status"] for h in doc.data["history"]] == ["opened", "updated"]
