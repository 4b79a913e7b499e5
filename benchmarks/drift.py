"""Drift check speed and memory against evidently's DataDriftPreset, on the same synthetic data.

    python -m benchmarks.drift --rows 100000 [--skip-evidently]

20 numeric and 5 categorical columns, N rows per side, some columns shifted. Our engine and
evidently each run in their own subprocess (peak memory is per process, data included) on data
generated there from the same seed. Ours is timed in two parts: building the reference profile
(`profile_s`, once per model version, cached on disk) and the check with that cached profile
(`ours_s`). evidently's time is `Report.run` (imports excluded). One JSON line is printed.
"""
from __future__ import annotations

import argparse
import json
import resource
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


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(rows: int) -> dict[str, Any]:
    import scipy.spatial.distance  # noqa: F401 - imports are excluded from the timings, as for evidently
    import scipy.stats  # noqa: F401

    from monitors.drift.engine import compare
    from monitors.drift.profile import ProfileCache, infer_kinds

    with tempfile.TemporaryDirectory() as root:
        cache = ProfileCache(Path(root))
        frames = {"reference": make_frame(rows, current=False)}
        kinds = infer_kinds(frames["reference"])
        start = time.perf_counter()
        cache.get_or_build("bench-ref", lambda: frames.pop("reference"), kinds)  # a check never holds it
        profile_s = time.perf_counter() - start
        profile = cache.get_or_build("bench-ref", _no_reference, kinds)
        current = make_frame(rows, current=True)
        start = time.perf_counter()
        features = compare(profile, current)
        ours_s = time.perf_counter() - start
    return {"seconds": ours_s, "profile_s": profile_s, "peak_mb": peak_mb(),
            "stats": {f.name: f.statistic for f in features}, "methods": {f.name: f.method for f in features}}


def _no_reference():
    raise AssertionError("the cached profile should have been read")


def run_evidently(rows: int) -> dict[str, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = make_frame(rows, current=False), make_frame(rows, current=True)
    # warm-up on a slice: evidently imports much of itself lazily on first use; imports are not timed
    Report([DataDriftPreset()]).run(current_data=current.iloc[:200], reference_data=reference.iloc[:200])
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    stats = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"] if "column" in m["config"]}
    return {"seconds": seconds, "peak_mb": peak_mb(), "stats": stats}


def in_subprocess(worker: str, rows: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.drift", "--rows", str(rows), "--worker", worker],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{worker} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(rows: int, ours: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    line = {"rows": rows, "ours_s": round(ours["seconds"], 4), "profile_s": round(ours["profile_s"], 4),
            "evidently_s": None, "speedup": None, "ours_peak_mb": round(ours["peak_mb"], 1),
            "evidently_peak_mb": None, "max_abs_diff": None}
    if theirs is not None:
        missing = set(ours["stats"]) ^ set(theirs["stats"])
        if missing:
            raise RuntimeError(f"columns tested by only one side: {sorted(missing)}")
        diff = max(abs(ours["stats"][name] - value) for name, value in theirs["stats"].items())
        line.update(evidently_s=round(theirs["seconds"], 3), speedup=round(theirs["seconds"] / ours["seconds"], 1),
                    evidently_peak_mb=round(theirs["peak_mb"], 1), max_abs_diff=diff)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per side (reference and current)")
    parser.add_argument("--skip-evidently", action="store_true", help="time only our engine")
    parser.add_argument("--worker", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 2:
        parser.error("--rows must be at least 2")
    if args.worker:
        print(json.dumps(run_ours(args.rows) if args.worker == "ours" else run_evidently(args.rows)))
        return 0
    ours = in_subprocess("ours", args.rows)
    theirs = None if args.skip_evidently else in_subprocess("evidently", args.rows)
    print(json.dumps(summary(args.rows, ours, theirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
