"""The demo's world: a fresh data folder, the monitor spec, the reference data and the champion."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from demo.data import FEATURES, LABEL, Traffic

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT, MODEL, MONITOR = "flights", "flights-delay", "flights-delay"
CHAMPION_FROM, CHAMPION_TO = pd.Timestamp("2013-01-01", tz="UTC"), pd.Timestamp("2013-04-01", tz="UTC")


@dataclass(frozen=True)
class Workspace:
    out: Path
    data_dir: Path
    monitors_dir: Path
    reference_path: Path

    def env(self, webhook_url: str) -> dict[str, str]:
        return {
            "MLOPS_DATA_DIR": str(self.data_dir), "MLOPS_MONITORS_DIR": str(self.monitors_dir),
            "CHECK_SCHEDULE": "0 5 */3 * * *",  # every 3 hours: a daily window is checked soon after it is due
            "TRACK_SCHEDULE": "0 0 * * * *",  # hourly: pipeline runs and canary bakes are looked at
            "MLOPS_RETRAIN_CONFIG": str(ROOT / "demo" / "retrain.yaml"),
            "MLOPS_WEBHOOK_URL": webhook_url, "MLOPS_WEBHOOK_FORMAT": "json", "MLOPS_CLOCK": "real",
        }


def create(out: Path) -> Workspace:
    out = out.resolve()
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    monitors = work / "monitors"
    (monitors / "reference").mkdir(parents=True)
    shutil.copy(ROOT / "monitors" / "examples" / f"{MONITOR}.yaml", monitors / f"{MONITOR}.yaml")
    return Workspace(out, work / "data", monitors, monitors / "reference" / f"{MONITOR}.parquet")


def apply_env(env: dict[str, str]) -> None:
    """The settings are app settings: the composition root reads them from the environment, as in Azure."""
    os.environ.update(env)


def training_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Traffic rows in the columns the pipeline and the monitor share: time, features, label."""
    out = rows[["time", *FEATURES, LABEL]].rename(columns={LABEL: "label"}).copy()
    out["time"] = pd.to_datetime(out["time"]).dt.tz_localize("UTC")
    return out.reset_index(drop=True)


def write_reference(ws: Workspace, traffic: Traffic) -> pd.DataFrame:
    """Jan-Mar, the champion's training data; replaced by the pipeline's scored reference once it is trained."""
    frame = training_frame(traffic.between(CHAMPION_FROM, CHAMPION_TO))
    frame.to_parquet(ws.reference_path, index=False)
    return frame


TRAINING = {"task": "binary", "train": "python train.py", "code": str(ROOT / "examples" / "flights")}


def champion_request(ws: Workspace) -> dict[str, Any]:
    return {"run_id": "champion", "endpoint": ENDPOINT, "model_name": MODEL, "features": dict(FEATURES),
            "label": "label", "time_column": "time", "reference": str(ws.reference_path), "recent": None,
            "rule": "reference+recent", "holdout_days": 7, "slices": ["origin"], "champion": None,
            "parent": None, "window": {"start": CHAMPION_FROM.isoformat(), "end": CHAMPION_TO.isoformat()},
            "requested_at": CHAMPION_TO.isoformat(), **TRAINING}


def predict(model: Any, frame: pd.DataFrame) -> Any:
    from retrain.components._models import answer

    return answer(model, frame, dict(FEATURES), "binary").score("binary")
