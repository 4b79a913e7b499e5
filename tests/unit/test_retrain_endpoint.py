"""The local endpoint over real HTTP on loopback: routing by traffic, scoring by Azure ML's inference server
(one process per deployment, MLflow models without a scoring script), telemetry, faults."""
from __future__ import annotations

import http.client
import json
from datetime import datetime, timedelta, timezone

import pytest

from core.clock import ManualClock
from core.telemetry_store import SqliteTelemetryStore
from core.types import EndpointRef
from retrain.deploy import LocalDeployer
from retrain.endpoint import LocalEndpoint, route
from retrain.registry import LocalModelRegistry
from tests.unit._retrain_data import FEATURES, months, register_model

EP = EndpointRef("flights-ep")
START = datetime(2013, 4, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    registry = LocalModelRegistry(tmp_path_factory.mktemp("registry"))
    v1 = register_model(registry, 1, 3, seed=0, run_id="a")
    return registry, v1, register_model(registry, 4, 5, seed=1, run_id="b")


@pytest.fixture
def served(models, tmp_path):
    registry, v1, v2 = models
    deployer = LocalDeployer(tmp_path / "endpoints.json", registry)
    store = SqliteTelemetryStore(tmp_path / "telemetry.sqlite")
    clock = ManualClock(START)
    with LocalEndpoint(EP.name, tmp_path / "endpoints.json", registry, store, clock) as endpoint:
        yield endpoint, deployer, store, clock, v1, v2


def post(conn, rows, ids, headers=None):
    columns = list(FEATURES)
    body = {"input_data": {"columns": columns, "data": rows[columns].astype(object).values.tolist()},
            "request_ids": ids}
    conn.request("POST", "/score", body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                   **(headers or {})})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def connect(endpoint):
    host, port = endpoint.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def test_routes_by_traffic_scores_and_logs_every_row(served):
    endpoint, deployer, store, clock, v1, v2 = served
    deployer.start_canary(EP, v1, 10)
    deployer.start_canary(EP, v2, 20)
    rows = months(6, 6, 1000, seed=3)
    ids = [f"req-{i}" for i in range(len(rows))]
    conn = connect(endpoint)  # one keep-alive connection for every request below
    code, out = post(conn, rows, ids)
    assert code == 200
    assert set(out["status_codes"]) == {200}
    assert all(0.0 <= s <= 1.0 for s in out["scores"])
    share = out["deployments"].count("green") / len(ids)
    assert 0.15 < share < 0.25
    assert out["deployments"] == [route(i, {"blue": 80, "green": 20}) for i in ids]  # replays route the same
    assert {d: m for d, m in zip(out["deployments"], out["model_versions"], strict=True)} == {
        "blue": str(v1), "green": str(v2)}
    clock.advance(timedelta(hours=1))
    code, again = post(conn, rows.iloc[:5], ids[:5])
    assert again["deployments"] == out["deployments"][:5]
    table = store.read_window(EP.name, START, START + timedelta(days=1)).to_pylist()
    assert len(table) == 1000  # the replayed request ids are stored once
    first = next(r for r in table if r["request_id"] == "req-0")
    assert first["s:origin"] == rows.iloc[0]["origin"]
    assert first["score"] == pytest.approx(out["scores"][0])


def test_a_faulty_canary_fails_its_share_and_health_shows_it(served):
    endpoint, deployer, store, clock, v1, v2 = served
    deployer.start_canary(EP, v1, 10)
    deployer.start_canary(EP, v2, 30)
    deployer.inject_fault(v2, error_rate=0.5)
    rows = months(7, 7, 600, seed=4)
    ids = [f"r{i}" for i in range(len(rows))]
    code, out = post(connect(endpoint), rows, ids)
    assert code == 200
    green = [c for d, c in zip(out["deployments"], out["status_codes"], strict=True) if d == "green"]
    assert 0.3 < green.count(500) / len(green) < 0.7
    assert all(c == 200 for d, c in zip(out["deployments"], out["status_codes"], strict=True) if d == "blue")
    health = store.deployment_health(EP.name, "green", START, START + timedelta(minutes=1))
    assert health.requests == len(green) and health.error_rate == pytest.approx(green.count(500) / len(green))
    assert store.deployment_health(EP.name, "blue", START, START + timedelta(minutes=1)).errors == 0
    deployer.inject_fault(v2)  # cleared
    # by deployment name; far above a real round trip, which on a loaded 2-core machine can take most of a second
    deployer.inject_fault("blue", extra_latency_ms=2500)
    clock.advance(timedelta(hours=1))
    code, out = post(connect(endpoint), rows.iloc[:50], [f"late{i}" for i in range(50)])
    assert set(out["status_codes"]) == {200}
    later = (START + timedelta(hours=1), START + timedelta(hours=2))
    assert store.deployment_health(EP.name, "blue", *later).p95_latency_ms >= 2500
    assert store.deployment_health(EP.name, "green", *later).p95_latency_ms < 2500


def test_bad_requests_are_refused_with_the_field_and_nothing_is_logged(served):
    endpoint, deployer, store, clock, v1, _ = served
    conn = connect(endpoint)
    conn.request("POST", "/score", body=json.dumps({"input_data": {"columns": ["a"], "data": [[1]]}}))
    response = conn.getresponse()
    assert response.status == 400 and json.loads(response.read())["field"] == "request_ids"
    code, out = post(conn, months(6, 6, 2, seed=5), ["a", "b"])
    assert code == 503 and "no deployment" in out["error"]
    deployer.start_canary(EP, v1, 10)
    code, out = post(conn, months(6, 6, 3, seed=5).drop(columns=["origin"]).assign(origin=None), ["x", "y", "z"])
    assert code == 200  # a missing category value is scored as missing, not refused
    conn.request("POST", "/score", body=b"{not json")
    response = conn.getresponse()
    assert response.status == 400 and json.loads(response.read())["field"] == "body"
    conn.request("GET", "/health")
    response = conn.getresponse()
    assert json.loads(response.read())["traffic"] == {"blue": 100}


class FlakySink:
    """The real store behind a switch: while `down`, writes fail as an unreachable store's would."""

    def __init__(self, store):
        self.store, self.down = store, True

    def write(self, records):
        from core.errors import TelemetryUnavailable

        if self.down:
            raise TelemetryUnavailable("store locked")
        self.store.write(records)


def test_scoring_goes_on_while_telemetry_is_down_and_the_rows_are_sent_later(models, tmp_path):
    registry, v1, _ = models
    LocalDeployer(tmp_path / "endpoints.json", registry).start_canary(EP, v1, 10)
    store = SqliteTelemetryStore(tmp_path / "telemetry.sqlite")
    sink = FlakySink(store)
    with LocalEndpoint(EP.name, tmp_path / "endpoints.json", registry, sink, ManualClock(START)) as endpoint:
        conn = connect(endpoint)
        assert post(conn, months(6, 6, 20, seed=8), [f"a{i}" for i in range(20)])[0] == 200
        sink.down = False
        assert post(conn, months(6, 6, 5, seed=9), [f"b{i}" for i in range(5)])[0] == 200
    assert len(store.read_window(EP.name, START, START + timedelta(days=1))) == 25
