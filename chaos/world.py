"""The chaos workspace: two monitored endpoints (one retrained on drift, one checked only), their reference
data, the retrain settings that make every retrain reach a canary quickly, a host.json, and the clock file.

Everything lives under one folder; the devhost processes get it through their environment, as an operator
would configure the Functions app.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.files import write_atomic, write_json
from core.types import iso

START = datetime(2024, 3, 1, tzinfo=UTC)
RETRAINED, CHECKED = "chaos", "chaos-b"  # endpoints
FEATURES = {"x1": "numeric", "x2": "numeric", "c1": "categorical"}
SPEC = """\
name: {endpoint}-monitor
endpoint: {{name: {endpoint}}}
model: {{name: {endpoint}-model}}
features:
  - {{name: x1, kind: numeric}}
  - {{name: x2, kind: numeric}}
  - {{name: c1, kind: categorical}}
prediction: {{column: score, kind: score}}
label: {{column: label, task: classification}}
reference: {{uri: {endpoint}.parquet}}
window: {{size: 20m, lateness: 2m, origin: "{origin}"}}
signals:
  data_drift: {{resamples: 40}}
  performance: {{min_labels: 10}}
  health: {{max_p95_latency_ms: 100000}}
alert: {{consecutive: 1, resolve_after: 1}}
retrain: {{on_drift: {retrain}}}
"""
# The retrained endpoint trains with the flights example's script, as a team's own command (docs/training.md).
RETRAIN_CONFIG = """\
policy: {{cooldown: 30m, max_per_day: 1000, min_new_labelled_rows: 20, require_performance_at_risk: false}}
gate: {{min_improvement: -1, max_slice_regression: 1, min_holdout_rows: 10, min_slice_rows: 100000}}
canary: {{percent: 20, bake: 40m, max_error_rate: 0.2, max_p95_latency_ms: 100000, min_requests: 8}}
deadlines: {{requested: 3h, running: 3h, trained: 2h, accepted: 2h, canary: 4h, promoting: 2h, rolling_back: 2h}}
endpoints:
  chaos: {{holdout_days: 1, rule: "reference+recent", train: "python train.py", code: "{code}"}}
"""


@dataclass(frozen=True)
class World:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def clock_file(self) -> Path:
        return self.root / "clock.txt"

    def env(self, port: int) -> dict[str, str]:
        return {"MLOPS_DATA_DIR": str(self.data), "MLOPS_MONITORS_DIR": str(self.root / "monitors"),
                "MLOPS_RETRAIN_CONFIG": str(self.root / "retrain.yaml"), "MLOPS_CLOCK": f"file:{self.clock_file}",
                "CHECK_SCHEDULE": "0 */5 * * * *", "TRACK_SCHEDULE": "0 */5 * * * *",
                "MLOPS_CHECK_LEASE": "60m", "MLOPS_CHECK_REQUEST_TTL": "60m", "MLOPS_WEBHOOK_URL": "",
                }

    def set_time(self, moment: datetime) -> None:
        write_atomic(self.clock_file, iso(moment))


def labelled(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Rows whose label follows x1 and x2; `shift` moves x1 (drift the monitors must see)."""
    x1, x2 = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)
    label = (x1 + 0.5 * x2 + rng.normal(0, 0.7, n) > shift).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "c1": rng.choice(["a", "b", "c"], n), "label": label,
                         "score": 1 / (1 + np.exp(-(x1 + 0.5 * x2 - shift)))})


def build(root: Path, seed: int) -> World:
    world = World(root)
    (root / "monitors").mkdir(parents=True, exist_ok=True)
    world.data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for endpoint, retrain in ((RETRAINED, "true"), (CHECKED, "false")):
        (root / "monitors" / f"{endpoint}.yaml").write_text(
            SPEC.format(endpoint=endpoint, origin=iso(START), retrain=retrain))
        reference = labelled(rng, 600)
        reference["time"] = pd.date_range(START - timedelta(days=3), periods=len(reference), freq="5min", tz="UTC")
        reference.to_parquet(root / "monitors" / f"{endpoint}.parquet")
    code = Path(__file__).resolve().parents[1] / "examples" / "flights"
    (root / "retrain.yaml").write_text(RETRAIN_CONFIG.format(code=code.as_posix()))
    host = json.loads((Path(__file__).parents[1] / "host.json").read_text())
    # A lock as long as a simulated handler may take at this speed; a lease longer than any check.
    host["extensions"]["serviceBus"]["lockDuration"] = "00:10:00"
    write_json(root / "host.json", host)
    world.set_time(START)
    return world
