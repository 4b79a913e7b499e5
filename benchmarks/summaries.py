"""Window summaries of a big window: streamed Arrow batches and Spark (local mode) against the exact engine.

    python -m benchmarks.summaries --rows 20000000

A window of N rows (four numeric features of different shapes, one categorical; some moved) is written as
Parquet files of a million rows, beside a reference of 200,000 rows. Each worker is its own process (its
peak memory is its own):
- streamed: pyarrow reads the dataset a batch at a time into a summary (monitors.drift.summary.add_frame);
- spark: the same summary computed by Spark in local mode (monitors.drift.spark), from the same files;
- exact: the whole window in memory through the exact engine (the reference implementation's numbers).
For each numeric method (wasserstein, ks on its D statistic, jensenshannon) it prints the largest difference
between the summary's statistic and the exact engine's, beside the largest bound the summary stated, and
whether every difference was within its bound. One JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NUMERIC = ("normal", "lognormal", "delay", "rounded")
METHODS = ("wasserstein", "ks", "jensenshannon")
CHUNK = 1_000_000
REFERENCE_ROWS = 200_000


def frame(rows: int, seed: int, moved: bool):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    shift = 0.1 if moved else 0.0
    return pd.DataFrame({
        "normal": rng.normal(shift, 1, rows), "lognormal": rng.lognormal(shift, 1, rows),
        "delay": rng.gamma(0.7, 20 * (1 + shift), rows), "rounded": np.round(rng.normal(shift, 1, rows), 1),
        "origin": rng.choice(["EWR", "JFK", "LGA", "SWF"], rows, p=[.34, .33, .33 - shift / 2, shift / 2])})


def write(rows: int, folder: Path) -> None:
    (folder / "window").mkdir()
    frame(REFERENCE_ROWS, 1, moved=False).to_parquet(folder / "reference.parquet")
    for i, start in enumerate(range(0, rows, CHUNK)):
        frame(min(CHUNK, rows - start), 100 + i, moved=True).to_parquet(folder / "window" / f"part-{i:04d}.parquet")


def profiles(folder: Path) -> dict[str, Any]:
    import pandas as pd

    from monitors.drift.profile import build_profile

    reference = pd.read_parquet(folder / "reference.parquet")
    kinds = {**dict.fromkeys(NUMERIC, "numeric"), "origin": "categorical"}
    return {m: build_profile(reference, kinds, methods=dict.fromkeys(NUMERIC, m)) for m in METHODS}


def worker(kind: str, folder: Path) -> dict[str, Any]:
    from monitors.drift.summary import SummarySpec

    built = profiles(folder)
    spec = SummarySpec.of(built["wasserstein"])  # the grid depends on the reference, not on the method
    started = time.perf_counter()
    session_s = 0.0
    if kind == "exact":
        return exact(built, folder, started)
    if kind == "streamed":
        import pyarrow.dataset as ds

        from monitors.drift.summary import add_frame

        summary = spec.empty()
        for batch in ds.dataset(folder / "window", format="parquet").to_batches(batch_size=CHUNK):
            add_frame(spec, summary, batch.to_pandas())
    else:
        from pyspark.sql import SparkSession

        from monitors.drift.spark import summarize

        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.driver.memory", "2g").getOrCreate())
        session_s = time.perf_counter() - started
        started = time.perf_counter()
        summary = summarize(spark.read.parquet(str(folder / "window")), spec)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "session_s": session_s, "peak_mb": peak_mb(), "rows": summary.rows,
            "stats": statistics(built, spec, summary)}


def statistics(built: dict[str, Any], spec: Any, summary: Any) -> dict[str, Any]:
    from monitors.drift.summary import WindowModel, drift

    out: dict[str, Any] = {}
    for method, profile in built.items():
        features, bounds = drift(profile, spec, summary)
        for f in features:
            if f.kind != "numeric":
                out[f"categorical/{f.name}"] = (f.statistic, bounds[f.name])
            elif method == "ks" and summary.columns[f.name].values is None:
                out[f"ks/{f.name}"] = WindowModel(profile.columns[f.name], spec.grids[f.name],
                                                  summary.columns[f.name]).ks()
            elif method == "ks":  # exact counts: D from the values themselves
                out[f"ks/{f.name}"] = (_d_exact(profile.columns[f.name], summary.columns[f.name]), 0.0)
            else:
                out[f"{method}/{f.name}"] = (f.statistic, bounds[f.name])
    return out


def _d_exact(col: Any, part: Any) -> float:
    import numpy as np

    from monitors.drift.stattests import ks_statistic

    keys = np.array(sorted(part.values))
    return ks_statistic(col.values, np.repeat(keys, [part.values[k] for k in keys.tolist()]))


def exact(built: dict[str, Any], folder: Path, started: float) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from monitors.drift.engine import compare
    from monitors.drift.stattests import ks_statistic

    window = pd.read_parquet(folder / "window")
    out: dict[str, Any] = {}
    for method, profile in built.items():
        for f in compare(profile, window):
            if f.kind != "numeric":
                out[f"categorical/{f.name}"] = (f.statistic, 0.0)
            elif method == "ks":
                values = window[f.name].to_numpy(dtype=float)
                out[f"ks/{f.name}"] = (ks_statistic(profile.columns[f.name].values,
                                                    np.sort(values[np.isfinite(values)])), 0.0)
            else:
                out[f"{method}/{f.name}"] = (f.statistic, 0.0)
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb(), "rows": len(window), "stats": out}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(kind: str, folder: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.summaries", "--worker", kind, str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_all(rows: int, spark: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(rows, folder)
        results = {kind: run(kind, folder) for kind in ("streamed", "exact") + (("spark",) if spark else ())}
    truth = results["exact"]["stats"]
    line: dict[str, Any] = {"rows": rows, "streamed_s": round(results["streamed"]["seconds"], 2),
                            "streamed_peak_mb": round(results["streamed"]["peak_mb"], 1),
                            "exact_s": round(results["exact"]["seconds"], 2),
                            "exact_peak_mb": round(results["exact"]["peak_mb"], 1)}
    if spark:
        line.update(spark_local_s=round(results["spark"]["seconds"], 2),
                    spark_session_s=round(results["spark"]["session_s"], 2))
    within = True
    for source in ("streamed", "spark") if spark else ("streamed",):
        diffs: dict[str, float] = {}
        bounds: dict[str, float] = {}
        for key, (value, bound) in results[source]["stats"].items():
            method = key.split("/")[0]
            diff = abs(value - truth[key][0])
            diffs[method] = max(diffs.get(method, 0.0), diff)
            bounds[method] = max(bounds.get(method, 0.0), bound)
            within &= diff <= bound + 1e-12
        line[f"{source}_max_abs_diff"] = {m: float(f"{v:.3g}") for m, v in diffs.items()}
        line[f"{source}_max_bound"] = {m: float(f"{v:.3g}") for m, v in bounds.items()}
    line["within_bounds"] = within
    return line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(argv[1], Path(argv[2]))))
        return 0
    cli = argparse.ArgumentParser(prog="python -m benchmarks.summaries", description=__doc__.splitlines()[0])
    cli.add_argument("--rows", type=int, default=20_000_000)
    cli.add_argument("--skip-spark", action="store_true", help="without pyspark (or Java)")
    args = cli.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    print(json.dumps(compare_all(args.rows, not args.skip_spark)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
