"""A small demo-like world for the read-side tests: the flights monitor, two weeks of traffic that turns hot
(and whose model gets worse) in its second week, labels a day later, checks run by devhost's own timer on a
manual clock, and two retrain runs recorded the way the retrain handlers record them.

    world = build(tmp_path, days=12)      # devhost on a free port, checks done, bootstrap configured
    world.get("monitors")                 # JSON over real HTTP with the function key
    world.close()
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).parents[2]
DAY0 = datetime(2013, 4, 1, tzinfo=timezone.utc)
SETTINGS = ("MLOPS_DATA_DIR", "MLOPS_MONITORS_DIR", "CHECK_SCHEDULE", "TRACK_SCHEDULE", "MLOPS_RETRAIN_CONFIG",
            "MLOPS_WEBHOOK_URL")


def flights(rng: np.random.Generator, n: int, temp_shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "carrier": rng.choice(["UA", "AA", "B6", "DL"], n), "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "dest": rng.choice(["ATL", "ORD", "LAX", "BOS", "MIA"], n), "sched_hour": rng.integers(5, 23, n) * 1.0,
        "distance": rng.gamma(4, 300, n), "temp": rng.normal(40 + temp_shift, 8, n), "dewp": rng.normal(25, 8, n),
        "humid": rng.uniform(30, 90, n), "wind_speed": rng.gamma(3, 4, n), "precip": rng.exponential(0.01, n),
        "pressure": rng.normal(1015, 7, n), "visib": rng.uniform(5, 10, n)})


def _scored(rng: np.random.Generator, frame: pd.DataFrame, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A model whose score tracks the label; more noise = a worse model."""
    label = rng.integers(0, 2, len(frame))
    score = np.clip(0.5 + (label - 0.5) * 0.6 + rng.normal(0, noise, len(frame)), 0.001, 0.999)
    return label, score


@dataclass
class World:
    tmp: Path
    box: Any
    host: Any
    clock: Any

    @property
    def key(self) -> str:
        return self.host.keys.function_key

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.host.http_port}/api/"

    def request(self, path: str, *, method: str = "GET", body: Any = None, key: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"x-functions-key": self.key} if key else {})}
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def get(self, path: str) -> Any:
        status, body = self.request(path)
        assert status == 200, (path, status, body)
        return body

    def close(self) -> None:
        import bootstrap
        from core.settings import Settings

        self.host.stop()
        bootstrap.configure(Settings())


def build(tmp: Path, monkeypatch: Any, *, days: int = 12, hot_from: int = 6, rows_per_day: int = 600,
          runs: bool = True) -> World:
    """`runs`: also record two retrain runs and a deployment (what the dashboard shows); without them the
    workspace is ready for a real retrain (no cooldown, no champion the local registry does not hold)."""
    import bootstrap
    import function_app
    from core.clock import ManualClock
    from core.settings import Settings
    from devhost.host import DevHost

    rng = np.random.default_rng(11)
    monitors = tmp / "monitors"
    (monitors / "reference").mkdir(parents=True)
    spec = (ROOT / "monitors/examples/flights-delay.yaml").read_text()
    # the runs are recorded below: a drift here must not start a real training pipeline
    (monitors / "flights-delay.yaml").write_text(spec.replace("on_drift: true", "on_drift: false"))
    ref = flights(rng, 4000)
    ref["label"], ref["score"] = _scored(rng, ref, 0.25)
    ref["time"] = pd.date_range("2013-01-01", periods=len(ref), freq="31min", tz="UTC")
    ref.to_parquet(monitors / "reference/flights-delay.parquet")
    values = {"MLOPS_DATA_DIR": str(tmp / "data"), "MLOPS_MONITORS_DIR": str(monitors),
              "CHECK_SCHEDULE": "0 5 */6 * * *", "TRACK_SCHEDULE": "0 0 0 1 1 *", "MLOPS_RETRAIN_CONFIG": "",
              "MLOPS_WEBHOOK_URL": ""}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clock = ManualClock(DAY0 + timedelta(days=1, hours=2))  # the first window checked is DAY0's
    box = bootstrap.configure(Settings(), clock=clock)
    _write_traffic(box, rng, days, hot_from, rows_per_day)
    if runs:
        _deploy(tmp / "data")
    host = DevHost(function_app.app, bus=box.bus, clock=clock, http_port=0, keys_path=tmp / "data" / "keys.json")
    world = World(tmp, box, host, clock)
    try:
        host.advance_to(DAY0 + timedelta(days=days, hours=2))
        host.drain()
        if runs:
            _record_runs(box, clock)
    except BaseException:
        world.close()
        raise
    return world


def _write_traffic(box: Any, rng: np.random.Generator, days: int, hot_from: int, rows_per_day: int) -> None:
    from core.telemetry import LabelRecord, RequestRecord

    step = 86400 / rows_per_day
    for day in range(days):
        hot = day >= hot_from
        frame = flights(rng, rows_per_day, temp_shift=30.0 if hot else 0.0)
        label, score = _scored(rng, frame, 0.45 if hot else 0.25)
        start = DAY0 + timedelta(days=day)
        box.telemetry_store.write([
            RequestRecord(time=start + timedelta(seconds=step * i), request_id=f"d{day}-r{i}", endpoint="flights",
                          deployment="blue", model_version="flights-delay:1", inputs=row, prediction=int(s > 0.5),
                          score=float(s), latency_ms=5.0 + (i % 7), status_code=200)
            for i, (row, s) in enumerate(zip(frame.to_dict("records"), score, strict=True))])
        box.telemetry_store.write_labels([LabelRecord(f"d{day}-r{i}", int(v), start + timedelta(days=1))
                                          for i, v in enumerate(label)])


def _deploy(data_dir: Path) -> None:
    from core.types import EndpointRef, ModelVersion
    from retrain.deploy import LocalDeployer

    LocalDeployer(data_dir / "endpoints.json").start_canary(EndpointRef("flights"),
                                                           ModelVersion("flights-delay", "1"), 10)


def _record_runs(box: Any, clock: Any) -> None:
    """Two runs as the retrain handlers leave them: one rejected by the gate, one promoted after a canary."""
    from retrain.runs import insert, new_record, transition

    first = DAY0 + timedelta(days=8, hours=3)
    for n, (outcome, gate) in enumerate([("rejected", {"accepted": False, "reasons": ["auc 0.61 < champion 0.64"]}),
                                         ("promoted", {"accepted": True, "reasons": ["auc 0.70 >= champion 0.64"]})]):
        at = first + timedelta(days=2 * n)
        run_id = f"rt-test{n}"
        trigger = {"kind": "drift", "monitor": "flights-delay", "incident_id": "i", "check_id": "c"}
        insert(box.store, new_record(run_id, "flights", "drift: temp", trigger, run_id, None, at))
        transition(box.store, run_id, "running", at + timedelta(minutes=5))
        transition(box.store, run_id, "trained", at + timedelta(hours=2),
                   candidate=f"flights-delay:{n + 2}", champion="flights-delay:1")
        state = "rejected" if outcome == "rejected" else "accepted"
        transition(box.store, run_id, state, at + timedelta(hours=2, minutes=1), gate=gate,
                   outcome={"result": "rejected", "reasons": gate["reasons"]} if state == "rejected" else None)
        if outcome == "promoted":
            transition(box.store, run_id, "canary", at + timedelta(hours=3),
                       deployment_step={"step": "canary", "deployment": "green", "traffic": {"blue": 80, "green": 20}})
            transition(box.store, run_id, "promoting", at + timedelta(days=1, hours=3))
            transition(box.store, run_id, "promoted", at + timedelta(days=1, hours=3),
                       deployment_step={"step": "promote", "traffic": {"green": 100}},
                       outcome={"result": "promoted", "traffic": {"green": 100}})
