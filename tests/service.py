"""The service on one machine for tests: the real function app under devhost on a simulated clock, with the real
SQLite bus and state, the local telemetry store, and the real handlers. The telemetry source is wrapped at the
network edge so a test can take it down (an outage) and count what each check fetched."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import TelemetryUnavailable
from core.types import EndpointRef, TelemetryBatch, Window

HOUR = timedelta(hours=1)
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
SPEC = """\
name: {name}
endpoint: {{name: {endpoint}}}
model: {{name: {name}-model}}
features:
  - {{name: distance, kind: numeric}}
  - {{name: carrier, kind: categorical}}
prediction: {{column: score, kind: score}}
reference: {{uri: {name}.parquet}}
window: {{size: 1h, lateness: 10m, origin: "2024-01-01T00:00:00Z"}}
signals:
  data_drift: {{resamples: 40}}
  performance: {{enabled: false}}
alert: {{consecutive: 1}}
retrain: {{on_drift: false}}
"""


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"distance": rng.normal(1000 + shift, 200, n), "carrier": rng.choice(["AA", "UA", "DL"], n),
                         "score": rng.uniform(size=n)})


class EdgeSource:
    """The telemetry source behind a switch: `down` makes every fetch an outage (TelemetryUnavailable), as the
    Log Analytics source reports one; `broken` windows fail with an error that is not an outage. Successful
    fetches are counted per window, which is how many times a check of that window was computed."""

    def __init__(self, source) -> None:
        self.source, self.down, self.broken = source, False, set()
        self.computed: Counter[Window] = Counter()

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        if self.down:
            raise TelemetryUnavailable("Log Analytics answered 503 (outage)")
        if window in self.broken:
            raise ZeroDivisionError(f"an evaluator cannot handle window {window.key()}")
        batch = self.source.fetch(endpoint, window)
        self.computed[window] += 1
        return batch


@dataclass
class World:
    box: object
    host: object
    clock: object
    source: EdgeSource
    data_dir: Path
    monitors_dir: Path

    def write_traffic(self, start: datetime, hours: int, per_hour: int = 40, endpoint: str = "flights",
                      shift: float = 0.0, seed: int = 0) -> None:
        from core.telemetry import RequestRecord

        rng = np.random.default_rng(seed)
        records = []
        for h in range(hours):
            rows = frame(rng, per_hour, shift).to_dict("records")
            for i, row in enumerate(rows):
                records.append(RequestRecord(
                    time=start + h * HOUR + timedelta(seconds=3600 * i / per_hour),
                    request_id=f"{endpoint}-{start:%Y%m%d%H%M}-{h}-{i}",
                    endpoint=endpoint, deployment="blue", model_version="1", inputs={k: row[k] for k in
                                                                                     ("distance", "carrier")},
                    prediction=row["score"], score=row["score"], latency_ms=5.0, status_code=200))
        self.box.telemetry_store.write(records)

    def advance(self, delta: timedelta) -> int:
        return self.host.advance_to(self.clock.now() + delta)

    def dead_letters(self, subscription: str = "run-check") -> list:
        from core.routing import TOPIC

        return self.box.bus.dead_letters(f"{TOPIC}/subscriptions/{subscription}")


def make_world(tmp_path: Path, monkeypatch, *, start: datetime, monitors: tuple[str, ...] = ("flights",),
               settings: dict[str, str] | None = None) -> World:
    import bootstrap
    import function_app
    from core.clock import ManualClock
    from core.settings import Settings
    from devhost.host import DevHost
    from monitors.telemetry.local import LocalTelemetrySource

    monitors_dir, data_dir = tmp_path / "monitors", tmp_path / "data"
    monitors_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for endpoint in monitors:
        name = f"{endpoint}-delay"
        (monitors_dir / f"{name}.yaml").write_text(SPEC.format(name=name, endpoint=endpoint))
        frame(rng, 600).to_parquet(monitors_dir / f"{name}.parquet")
    env = {"MLOPS_DATA_DIR": str(data_dir), "MLOPS_MONITORS_DIR": str(monitors_dir),
           "CHECK_SCHEDULE": "0 */5 * * * *", "TRACK_SCHEDULE": "0 */10 * * * *", **(settings or {})}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clock = ManualClock(start)
    box = bootstrap.configure(Settings(), clock=clock)
    source = EdgeSource(LocalTelemetrySource(box.telemetry_store))
    box.__dict__["telemetry"] = source  # the composition root's cached adapter, replaced at the edge
    host = DevHost(function_app.app, bus=box.bus, clock=clock, keys_path=data_dir / "keys.json")
    return World(box, host, clock, source, data_dir, monitors_dir)
