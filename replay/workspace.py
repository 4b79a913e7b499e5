"""The replay's world: the history as traffic, a fresh data folder, the monitor spec, the retrain config."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LABEL = "label"  # the telemetry's name for ground truth: the target is called so throughout the loop
PREDICTION = {"binary": ("score", "score"), "multiclass": ("prediction", "class"),
              "regression": ("prediction", "value")}  # task -> the telemetry column and kind monitors read


@dataclass(frozen=True)
class Traffic:
    """The history as requests: time (naive UTC), request_id, the features and the label; sorted by time."""

    frame: pd.DataFrame
    features: dict[str, str]
    task: str

    def between(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        times = self.frame["time"].to_numpy()
        lo = np.searchsorted(times, np.datetime64(start.tz_convert(None)), "left")
        hi = np.searchsorted(times, np.datetime64(end.tz_convert(None)), "left")
        return self.frame.iloc[lo:hi]


def traffic_from(history: Any, features: dict[str, str], sample: float, seed: int) -> Traffic:
    """A seeded `sample` of the history's rows; request ids name the row, so a replay routes the same way."""
    frame = history.frame
    out = pd.DataFrame({"time": frame[history.time_column].dt.tz_convert(None),
                        "request_id": "row-" + frame.index.astype(str)})
    for name in features:
        out[name] = frame[name].to_numpy()
    out[LABEL] = frame[history.target].to_numpy()
    if history.task == "binary":
        out[LABEL] = out[LABEL].astype(int)
    if sample < 1.0:
        out = out.sample(frac=sample, random_state=seed)
    out = out.sort_values(["time", "request_id"], kind="stable").reset_index(drop=True)
    return Traffic(out, dict(features), history.task)


def training_frame(rows: pd.DataFrame, features: dict[str, str]) -> pd.DataFrame:
    """Traffic rows in the columns the pipeline and the monitor share: time (UTC), features, label."""
    out = rows[["time", *features, LABEL]].copy()
    out["time"] = pd.to_datetime(out["time"]).dt.tz_localize("UTC")
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Workspace:
    out: Path
    data_dir: Path
    monitors_dir: Path
    spec_path: Path
    reference_path: Path
    config_path: Path

    def env(self, webhook_url: str) -> dict[str, str]:
        return {
            "MLOPS_DATA_DIR": str(self.data_dir), "MLOPS_MONITORS_DIR": str(self.monitors_dir),
            "CHECK_SCHEDULE": "0 5 */3 * * *",  # every 3 hours: a daily window is checked soon after it is due
            "TRACK_SCHEDULE": "0 0 * * * *",  # hourly: pipeline runs and canary bakes are looked at
            "MLOPS_RETRAIN_CONFIG": str(self.config_path),
            "MLOPS_WEBHOOK_URL": webhook_url, "MLOPS_WEBHOOK_FORMAT": "json", "MLOPS_CLOCK": "real",
        }


def create(out: Path) -> Workspace:
    out = out.resolve()
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    monitors = work / "monitors"
    (monitors / "reference").mkdir(parents=True)
    return Workspace(out, work / "data", monitors, monitors / "monitor.yaml",
                     monitors / "reference" / "monitor.parquet", work / "retrain.yaml")


def apply_env(env: dict[str, str]) -> None:
    """The settings are app settings: the composition root reads them from the environment, as in Azure."""
    os.environ.update(env)
