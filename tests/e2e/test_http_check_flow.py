"""The foundation end to end under devhost: HTTP POST /api/checks -> the bus -> the check handler ->
events published -> a subscriber receives them; status read back over HTTP. Real sockets, real SQLite."""
import json
import shutil
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bootstrap
import function_app
from core.clock import ManualClock
from core.settings import Settings
from core.telemetry import RequestRecord
from devhost.host import DevHost

ROOT = Path(__file__).parents[2]
DAY0 = datetime(2013, 4, 1, tzinfo=timezone.utc)
FEATURES = ["carrier", "origin", "dest", "sched_hour", "distance", "temp", "dewp", "humid", "wind_speed",
            "precip", "pressure", "visib"]


def flights(rng, n, temp_shift=0.0):
    return pd.DataFrame({
        "carrier": rng.choice(["UA", "AA", "B6", "DL"], n), "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "dest": rng.choice(["ATL", "ORD", "LAX", "BOS", "MIA"], n), "sched_hour": rng.integers(5, 23, n) * 1.0,
        "distance": rng.gamma(4, 300, n), "temp": rng.normal(40 + temp_shift, 8, n), "dewp": rng.normal(25, 8, n),
        "humid": rng.uniform(30, 90, n), "wind_speed": rng.gamma(3, 4, n), "precip": rng.exponential(0.01, n),
        "pressure": rng.normal(1015, 7, n), "visib": rng.uniform(5, 10, n)})


@pytest.fixture()
def world(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    monitors = tmp_path / "monitors"
    (monitors / "reference").mkdir(parents=True)
    shutil.copy(ROOT / "monitors/examples/flights-delay.yaml", monitors / "flights-delay.yaml")
    ref = flights(rng, 3000)
    ref["label"] = rng.integers(0, 2, len(ref))
    ref["score"] = rng.random(len(ref))
    ref["time"] = pd.date_range("2013-01-01", periods=len(ref), freq="37min", tz="UTC")
    ref.to_parquet(monitors / "reference/flights-delay.parquet")
    for name, value in {"MLOPS_DATA_DIR": str(tmp_path / "data"), "MLOPS_MONITORS_DIR": str(monitors),
                        "CHECK_SCHEDULE": "0 5 * * * *", "TRACK_SCHEDULE": "0 */30 * * * *"}.items():
        monkeypatch.setenv(name, value)
    clock = ManualClock(DAY0 + timedelta(days=1, hours=2))
    box = bootstrap.configure(Settings(), clock=clock)
    current = flights(rng, 900, temp_shift=25.0)  # a hot day against a cold reference
    box.telemetry_store.write([
        RequestRecord(time=DAY0 + timedelta(seconds=90 * i), request_id=f"r{i}", endpoint="flights",
                      deployment="blue", model_version="flights-delay:1", inputs=row, prediction=0, score=0.3,
                      latency_ms=4.0, status_code=200)
        for i, row in enumerate(current.to_dict("records"))])
    host = DevHost(function_app.app, bus=box.bus, clock=clock, http_port=0,
                   keys_path=tmp_path / "data" / "keys.json")
    yield box, host
    host.stop()
    bootstrap.configure(Settings())


def call(host, method, path, body=None, key=True):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-functions-key"] = host.keys.function_key
    req = urllib.request.Request(f"http://127.0.0.1:{host.http_port}/api/{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_check_runs_through_the_bus_and_publishes_its_events(world):
    box, host = world
    window = {"start": "2013-04-01T00:00:00Z", "end": "2013-04-02T00:00:00Z"}
    assert call(host, "POST", "checks", {"monitor": "flights-delay", "window": window}, key=False)[0] == 401

    status, accepted = call(host, "POST", "checks", {"monitor": "flights-delay", "window": window})
    assert status == 202 and accepted["status_url"] == f"/api/checks/{accepted['check_id']}"
    assert call(host, "GET", f"checks/{accepted['check_id']}")[0] == 404  # not run yet: nothing invented

    assert host.drain() >= 1  # run-check consumed the request, then alerts and retrain consumed what followed

    status, record = call(host, "GET", f"checks/{accepted['check_id']}")
    assert status == 200 and record["rows"] == 900 and record["window"] == window
    temp = next(f for f in record["summary"]["features"] if f["name"] == "temp")
    assert temp["drifted"] and temp["calibrated"]["effect"] >= temp["calibrated"]["floor"]

    path = f"checks/{accepted['check_id']}/report"
    status, receipt = call(host, "GET", path)  # never rendered inside the request: 202 and where to look
    assert status == 202 and receipt["status"] == "building" and receipt["report_url"] == f"/api/{path}"
    assert host.drain() >= 1  # the reports consumer builds it
    report = urllib.request.Request(f"http://127.0.0.1:{host.http_port}/api/{path}",
                                    headers={"x-functions-key": host.keys.function_key})
    with urllib.request.urlopen(report, timeout=30) as res:
        assert res.status == 200 and res.headers["Content-Type"].startswith("text/html")
        body = res.read()
        assert body.lstrip().lower().startswith(b"<!doctype html") and b"<td>temp</td>" in body
        assert body.index(b"DRIFT by this service") < body.index(b"<iframe") and len(body) > 10_000

    from core.records import audited_events

    types = [e.type for e in audited_events(box.store)]  # the audit consumer keeps every event
    assert types[0] == "mlops.check.requested.v1" and "mlops.check.completed.v1" in types
    for entity in box.bus.entities():
        assert box.bus.dead_letters(entity) == [], entity


def test_unknown_monitor_is_a_404_and_bad_body_names_the_field(world):
    _, host = world
    assert call(host, "POST", "checks", {"monitor": "nope"})[0] == 404
    status, doc = call(host, "POST", "checks", {"monitor": "flights-delay", "window": {"start": "x", "end": "y"}})
    assert status == 400 and doc["field"] == "window.start"
    assert call(host, "GET", "health", key=False) == (200, {"status": "ok"})
