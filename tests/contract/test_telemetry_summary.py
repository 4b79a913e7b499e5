"""Window summaries where the telemetry lies: Log Analytics answers per-bin counts (the KQL, through the real
SDK path with the network edge faked), and they equal the summary of the same rows computed here."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from core.errors import TelemetryUnavailable
from core.telemetry import RequestRecord
from core.types import EndpointRef, Window
from monitors.drift.profile import build_profile
from monitors.drift.summary import SummarySpec, add_frame, drift
from monitors.telemetry import kql
from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource
from tests.contract.loganalytics_fake import FakeCredential, FakeLogAnalytics

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOUR = Window(T0, T0 + timedelta(hours=1))
EP = EndpointRef("flights-delay")
FEATURES = {"distance": "numeric", "dep_delay": "numeric", "origin": "categorical"}


def reference() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"distance": rng.gamma(4, 300, 3000), "dep_delay": rng.integers(-5, 60, 3000) * 1.0,
                         "origin": rng.choice(["JFK", "LGA", "EWR"], 3000)})


def traffic(n: int) -> list[RequestRecord]:
    rng = np.random.default_rng(4)
    out = []
    for i in range(n):
        inputs = {"distance": float(rng.gamma(4, 330)), "dep_delay": float(rng.integers(-5, 90)),
                  "origin": str(rng.choice(["JFK", "LGA", "EWR", "SWF"]))}
        if i % 50 == 0:
            inputs["distance"] = None
        out.append(RequestRecord(time=T0 + timedelta(seconds=3 * i), request_id=f"r{i}", endpoint=EP.name,
                                 deployment="blue", model_version="3", inputs=inputs, prediction=1.0, score=0.5,
                                 latency_ms=10.0, status_code=200))
    return out


@pytest.fixture(scope="module")
def spec_and_profile():
    profile = build_profile(reference(), FEATURES)
    return SummarySpec.of(profile), profile


def source(fake: FakeLogAnalytics) -> LogAnalyticsTelemetrySource:
    return LogAnalyticsTelemetrySource("ws-1", credential=FakeCredential(), transport=fake, features=FEATURES,
                                       retry_backoff_factor=0.01, now=lambda: T0 + timedelta(days=3))


def test_the_query_bins_in_kusto_and_returns_only_counts(spec_and_profile):
    spec, _ = spec_and_profile
    query = kql.summary_query("MLRequests_CL", EP, HOUR.start, HOUR.end, spec)
    assert query.startswith("let grid_bin = (v: real, c: real, s: real, low: real, step: real, bins: long)")
    assert "sign(y) * log(abs(y) + sqrt(y * y + 1.0))" in query  # asinh written out, as numpy and Spark do
    assert 'where Endpoint == "flights-delay"' in query and "TimeGenerated >= datetime(2024-03-01T00:00:00" in query
    assert query.count("summarize Rows = count()") == 1 + 2 + 1 + 1  # total, two numerics, exact values, origin
    grid = spec.grids["distance"]
    assert f"grid_bin(v, real({grid.centre!r}), real({grid.scale!r}), real({grid.low!r}), real({grid.step!r}), " \
           f"{grid.bins})" in query
    assert "Value = v | take 4097" in query  # dep_delay has few distinct values: counted exactly, up to the limit
    assert query.rstrip().endswith("| project Feature, Bin, Key, Value, Rows, Low, High")
    assert "Inputs[\"origin\"]" in query and "tostring(Inputs[\"origin\"])" in query


def test_kusto_counts_decode_to_the_summary_of_the_same_rows(spec_and_profile):
    spec, profile = spec_and_profile
    fake = FakeLogAnalytics("ws-1")
    fake.add(traffic(1200))
    la = source(fake)
    remote = la.summarize(EP, HOUR, spec)
    assert len(fake.data_queries()) == 1  # one query, whatever the window's size
    here = add_frame(spec, spec.empty(), la.fetch(EP, HOUR).frame)
    assert remote.rows == here.rows == 1200
    for name in ("distance", "dep_delay"):
        a, b = remote.columns[name], here.columns[name]
        assert (a.counts == b.counts).all() and (a.low, a.high, a.missing) == (b.low, b.high, b.missing)
        assert a.values == b.values
    assert remote.columns["distance"].missing == 24 and remote.columns["dep_delay"].values is not None
    assert remote.columns["origin"].counts == here.columns["origin"].counts and "SWF" in remote.columns["origin"].counts
    features, bounds = drift(profile, spec, remote)
    assert {f.name for f in features} == set(FEATURES) and bounds["dep_delay"] == 0.0 and bounds["origin"] == 0.0


def test_a_partial_summary_is_refused(spec_and_profile):
    spec, _ = spec_and_profile
    fake = FakeLogAnalytics("ws-1")
    fake.add(traffic(50))
    fake.fail_next(200, body="partial", kind="rows")
    with pytest.raises(TelemetryUnavailable, match="only partly"):
        source(fake).summarize(EP, HOUR, spec)


def test_the_local_store_streams_its_window_into_the_same_summary(spec_and_profile, tmp_path):
    from core.telemetry_store import SqliteTelemetryStore
    from monitors.telemetry.local import LocalTelemetrySource

    spec, _ = spec_and_profile
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    rows = traffic(1200)
    for i in range(0, len(rows), 100):
        store.write(rows[i:i + 100])
    store.write([RequestRecord(time=T0 + timedelta(minutes=5), request_id="bad", endpoint=EP.name,
                               deployment="blue", model_version="3", inputs={"distance": "far", "dep_delay": 1.0,
                                                                             "origin": "JFK"},
                               prediction=1.0, score=0.5, latency_ms=10.0, status_code=200)])
    local = LocalTelemetrySource(store, FEATURES)
    streamed = local.summarize(EP, HOUR, spec, batch_rows=128)  # many chunks, one in memory at a time
    here = add_frame(spec, spec.empty(), local.fetch(EP, HOUR).frame)
    assert streamed.rows == here.rows == 1200 and streamed.rejected == {"wrong_type": 1}
    for name in ("distance", "dep_delay"):
        assert (streamed.columns[name].counts == here.columns[name].counts).all()
        assert streamed.columns[name].missing == here.columns[name].missing
    assert streamed.columns["origin"].counts == here.columns["origin"].counts
