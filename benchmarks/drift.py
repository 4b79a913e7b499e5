"""A drift check as a user runs it, against evidently's DataDriftPreset, on the same Parquet files.

    python -m benchmarks.drift --rows 1000000 [--repeat 3] [--skip-evidently]

20 numeric and 5 categorical columns, N rows per side, some columns shifted, written once as Parquet.
Each run is a whole new process, imports and file reads included:
- ours cold: `python -m monitors check` with an empty cache folder (profile and nulls built);
- ours warm: the same command again, with the cache the cold run left (the reference is only hashed);
- evidently: a process that reads the same files with pandas and runs `Report([DataDriftPreset()])`.
Runs alternate (cold, warm, evidently) `--repeat` times; medians are printed, with peak memory (the
largest resident set of each process, from the kernel) and the largest difference between our per-column
statistics and evidently's. One JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NUMERIC, CATEGORICAL = 20, 5
SEED = 20240


def make_frame(rows: int, current: bool):
    """Reference or current window; the current one shifts 6 numeric and 2 categorical columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED + int(current))
    columns: dict[str, Any] = {}
    for i in range(NUMERIC):
        shift = 0.05 * (i + 1) if current and i < 6 else 0.0
        kind = i % 4
        if kind == 0:
            columns[f"num_{i}"] = rng.normal(shift, 1.0, rows)
        elif kind == 1:
            columns[f"num_{i}"] = rng.lognormal(shift, 0.8, rows)
        elif kind == 2:
            columns[f"num_{i}"] = rng.gamma(2.0 + shift, 3.0, rows)
        else:
            columns[f"num_{i}"] = np.round(rng.normal(10 + shift, 3, rows), 1)
    if current:
        columns["num_3"][rng.random(rows) < 0.01] = np.nan  # missing values are dropped, as evidently does
    for j in range(CATEGORICAL):
        size = 6 + 4 * j
        labels = np.array([f"c{j}_{k}" for k in range(size + 1)], dtype=object)  # the last one is unseen
        weights = np.linspace(1, 3, size) ** (2 if current and j < 2 else 1)
        unseen = 0.03 * weights.sum() if current and j == 0 else 0.0
        probs = np.append(weights, unseen)
        columns[f"cat_{j}"] = labels[rng.choice(size + 1, rows, p=probs / probs.sum())]
    return pd.DataFrame(columns)


def write_files(rows: int, folder: Path) -> tuple[Path, Path]:
    reference, current = folder / "reference.parquet", folder / "current.parquet"
    make_frame(rows, current=False).to_parquet(reference)
    make_frame(rows, current=True).to_parquet(current)
    return reference, current


def run_evidently(reference: Path, current: Path) -> None:
    """The worker: what a user of evidently runs for the same question. Prints per-column scores."""
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(current_data=pd.read_parquet(current),
                                               reference_data=pd.read_parquet(reference))
    stats = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"] if "column" in m["config"]}
    print(json.dumps({"statistics": stats}))


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB of that process, stdout) of a whole process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout = out.read().decode()
        if child.returncode not in (0, 1):  # 1: drift found, which this data has
            raise RuntimeError(f"{command[:4]} failed ({child.returncode}):\n{err.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024.0, stdout


def measure(rows: int, repeat: int, evidently: bool) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": [], "evidently": []}
    with tempfile.TemporaryDirectory() as folder:
        reference, current = write_files(rows, Path(folder))
        ours: dict[str, Any] = {}
        theirs: dict[str, Any] = {}
        for attempt in range(repeat):
            cache = Path(folder) / f"cache-{attempt}"
            check = [sys.executable, "-m", "monitors", "check", "--reference", str(reference), "--current",
                     str(current), "--cache-dir", str(cache)]
            for kind in ("cold", "warm"):
                seconds, peak, out = timed(check)
                runs[kind].append((seconds, peak))
                ours = json.loads(out)
            if evidently:
                seconds, peak, out = timed([sys.executable, "-m", "benchmarks.drift", "--worker", str(reference),
                                            str(current)])
                runs["evidently"].append((seconds, peak))
                theirs = json.loads(out)["statistics"]
    return summary(rows, runs, ours, theirs)


def summary(rows: int, runs: dict[str, list[tuple[float, float]]], ours: dict[str, Any],
            theirs: dict[str, Any]) -> dict[str, Any]:
    def median(kind: str) -> float | None:
        return round(statistics.median(s for s, _ in runs[kind]), 3) if runs[kind] else None

    def peak(kind: str) -> float | None:
        return round(max(p for _, p in runs[kind]), 1) if runs[kind] else None

    line: dict[str, Any] = {"rows": rows, "repeat": len(runs["cold"]), "ours_cold_s": median("cold"),
                            "ours_warm_s": median("warm"), "evidently_s": median("evidently"),
                            "ours_peak_mb": peak("cold"), "ours_warm_peak_mb": peak("warm"),
                            "evidently_peak_mb": peak("evidently"), "speedup_cold": None, "speedup_warm": None,
                            "max_abs_diff": None, "dataset_drift": ours.get("dataset_drift")}
    if theirs:
        stats = {f["name"]: f["evidently"]["statistic"] for f in ours["features"]}
        if set(stats) != set(theirs):
            raise RuntimeError(f"columns tested by only one side: {sorted(set(stats) ^ set(theirs))}")
        line["max_abs_diff"] = max(abs(stats[name] - value) for name, value in theirs.items())
        line["speedup_cold"] = round(line["evidently_s"] / line["ours_cold_s"], 1)
        line["speedup_warm"] = round(line["evidently_s"] / line["ours_warm_s"], 1)
    return line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        run_evidently(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per side (reference and current)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind; medians are printed")
    parser.add_argument("--skip-evidently", action="store_true", help="time only our command")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.repeat < 1:
        parser.error("--rows must be at least 2 and --repeat at least 1")
    print(json.dumps(measure(args.rows, args.repeat, not args.skip_evidently)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
