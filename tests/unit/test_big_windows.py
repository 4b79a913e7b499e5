"""A window above the summary threshold is checked from summaries, through the real check path (local store,
run_check): the record says which path, the statistics' error bounds hold, the verdict agrees with the exact one."""
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.clock import ManualClock
from core.events import event_id, new_event
from core.records import CHECK
from core.state_sqlite import SqliteStateStore
from core.telemetry import RequestRecord
from core.telemetry_store import SqliteTelemetryStore
from monitors.check import CheckDeps, run_check
from monitors.drift.profile import ProfileCache
from monitors.spec import SpecRepository
from monitors.telemetry.local import LocalTelemetrySource
from monitors.telemetry.router import SpecTelemetrySource
from tests.unit.test_check_handler import MemoryReports, RecordingPublisher

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ROWS = 3000
SPEC = """\
name: {name}
endpoint: {{name: shop}}
model: {{name: basket}}
features:
  - {{name: amount, kind: numeric}}
  - {{name: items, kind: numeric}}
  - {{name: country, kind: categorical}}
reference: {{uri: ref.parquet}}
window: {{size: 1d, summary_above: {above}}}
signals:
  data_drift: {{resamples: 40}}
alert: {{consecutive: 1}}
"""


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.lognormal(3.0 + shift, 0.5, n), "items": rng.integers(1, 9, n).astype(float),
                         "country": rng.choice(["DE", "FR", "NL"], n, p=[0.5, 0.3, 0.2] if not shift else
                                               [0.3, 0.3, 0.4])})


def requests(day: int) -> list[RequestRecord]:
    """A day of traffic: day 1 like the reference, day 2 moved."""
    rows = frame(np.random.default_rng(day), ROWS, 0.4 if day == 2 else 0.0).to_dict("records")
    return [RequestRecord(time=T0 + day * DAY + timedelta(seconds=20 * i), request_id=f"d{day}-{i}", endpoint="shop",
                          deployment="blue", model_version="1", inputs=row, prediction=None, score=None,
                          latency_ms=5.0, status_code=200) for i, row in enumerate(rows)]


@pytest.fixture
def deps(tmp_path):
    frame(np.random.default_rng(0), 4000).to_parquet(tmp_path / "ref.parquet")
    for name, above in (("exact", ROWS), ("summary", ROWS - 1)):  # the same window, either side of the threshold
        (tmp_path / f"{name}.yaml").write_text(SPEC.format(name=name, above=above))
    telemetry = SqliteTelemetryStore(tmp_path / "telemetry.sqlite")
    for day in (1, 2):
        telemetry.write(requests(day))
    specs = SpecRepository(tmp_path)
    store = SqliteStateStore(tmp_path / "state.sqlite")
    yield CheckDeps(store=store, publisher=RecordingPublisher(), specs=specs,
                    telemetry=SpecTelemetrySource(specs, LocalTelemetrySource(telemetry)),
                    profiles=ProfileCache(tmp_path / "profiles"), reports=MemoryReports(),
                    clock=ManualClock(T0 + 10 * DAY), base_dir=tmp_path)
    store.close()


def check(deps: CheckDeps, monitor: str, day: int) -> dict:
    start = T0 + day * DAY
    data = {"monitor": monitor, "window_start": start.isoformat(), "window_end": (start + DAY).isoformat(),
            "reason": "timer"}
    record = run_check(new_event("mlops.check.requested.v1", data, id=event_id("check.requested", monitor, day)),
                       deps)
    return deps.store.get(CHECK, record["check_id"]).data


def drift_findings(doc: dict) -> dict[str, dict]:
    return {f["name"]: f for f in doc["findings"] if f["signal"] == "data_drift" and f["name"] != "dataset"}


@pytest.mark.parametrize("day, drifted", [(1, False), (2, True)])
def test_the_path_flips_at_the_threshold_and_the_verdict_agrees_with_the_exact_engine(deps, day, drifted):
    exact, summary = check(deps, "exact", day), check(deps, "summary", day)
    assert exact["path"] == "exact" and exact["window_read"]["why"].startswith(f"{ROWS} rows, at most")
    assert summary["path"] == "summary" and summary["rows"] == exact["rows"] == ROWS
    assert summary["summary"]["dataset_drift"] is exact["summary"]["dataset_drift"] is drifted
    assert {f["name"] for f in summary["summary"]["features"] if f["drifted"]} == \
        {f["name"] for f in exact["summary"]["features"] if f["drifted"]}
    bounds = summary["window_read"]["error_bounds"]
    methods = {f["method"] for f in drift_findings(summary).values()}
    assert set(bounds["by_method"]) == methods and bounds["by_feature"]["country"] == 0.0
    assert 0 < bounds["by_feature"]["amount"] < 0.05  # a grid bin's share of the window, at most
    for name, found in drift_findings(summary).items():  # each statistic within its stated bound
        assert found["details"]["error_bound"] == bounds["by_feature"][name]
        assert abs(found["statistic"] - drift_findings(exact)[name]["statistic"]) <= found["details"]["error_bound"] \
            + 1e-12
    assert {f["signal"] for f in summary["findings"]} == {f["signal"] for f in exact["findings"]}  # the sample's
    assert summary["window_read"]["sampled_rows"] == ROWS  # a window this small is sampled whole


def test_a_window_at_or_under_the_threshold_and_a_source_that_cannot_summarise_read_every_row(deps):
    deps = CheckDeps(**{**deps.__dict__, "telemetry": deps.telemetry.default})  # the local source itself
    assert check(deps, "summary", 2)["path"] == "summary"
    assert check(deps, "exact", 2)["window_read"]["why"] == f"{ROWS} rows, at most the {ROWS} above which " \
                                                            "summaries are used"
    plain = CheckDeps(**{**deps.__dict__, "telemetry": FetchOnly(deps.telemetry)})
    doc = check(plain, "summary", 1)
    assert doc["path"] == "exact" and "cannot summarise" in doc["window_read"]["why"] and doc["rows"] == ROWS


class FetchOnly:
    """A source that can only fetch (as a data collector source)."""

    def __init__(self, source):
        self.source = source

    def fetch(self, endpoint, window):
        return self.source.fetch(endpoint, window)


def test_on_log_analytics_the_summary_is_computed_in_the_workspace(deps):
    from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource
    from tests.contract.loganalytics_fake import FakeCredential, FakeLogAnalytics

    workspace = FakeLogAnalytics("ws-1")
    workspace.add(requests(2))
    source = LogAnalyticsTelemetrySource("ws-1", credential=FakeCredential(), transport=workspace,
                                         now=lambda: T0 + 10 * DAY)
    deps = CheckDeps(**{**deps.__dict__, "telemetry": SpecTelemetrySource(deps.specs, source)})
    exact, summary = check(deps, "exact", 2), check(deps, "summary", 2)
    assert (exact["path"], summary["path"], summary["rows"]) == ("exact", "summary", ROWS)
    assert summary["summary"]["dataset_drift"] is exact["summary"]["dataset_drift"] is True
    assert any("grid_bin(" in q["query"] for q in workspace.data_queries())  # only per-bin counts travelled
    assert summary["window_read"]["sampled_rows"] == ROWS  # under SAMPLE_ROWS: the sample is the whole window
