"""A check of a big window through the service path, cold and warm, beside evidently on the same window.

    python -m benchmarks.service --rows 1000000

The requests of one hour (20 numeric and 5 categorical inputs, benchmarks.drift's data: some columns moved)
are written to the local telemetry store through its own write path (untimed), beside a reference of as many
rows. A new process then runs the function app under devhost on the embedded defaults (SQLite bus and
state, local store) and asks for a check of that hour: the request event is published, the run-check
consumer fetches the window, fits the evaluators (reference profile, no-drift nulls) and evaluates them,
stores the record and publishes its events (the completed event among them); the bus is drained (the
consumers of those events too) and the window must be done (its events relayed).
- `cold_s`: that first check in the new process (nothing cached: profile, nulls, evaluators);
- `warm_s`: the same window checked again in that process (forced): what a running service pays per window;
- `process_s`: the whole process, imports and app start included;
- `evidently_s`: a process reading the window and the reference from Parquet and running DataDriftPreset.
Runs alternate `--repeat` times; medians, and the largest resident set of each kind of process. One JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MONITOR = "bench"


def spec_text(columns: list[str]) -> str:
    features = "\n".join(f"  - {{name: {c}, kind: {'categorical' if c.startswith('cat_') else 'numeric'}}}"
                         for c in columns)
    return (f"name: {MONITOR}\nendpoint: {{name: bench-ep}}\nmodel: {{name: bench-model}}\nfeatures:\n{features}\n"
            f"reference: {{uri: reference.parquet}}\n"
            f"window: {{size: 1h, lateness: 10m, origin: \"{ORIGIN.isoformat().replace('+00:00', 'Z')}\"}}\n"
            "signals:\n  performance: {enabled: false}\nalert: {consecutive: 1}\nretrain: {on_drift: false}\n")


def prepare(rows: int, folder: Path, batch: int = 20_000) -> None:
    """Monitors folder (spec, reference), the window's Parquet copy for evidently, the store filled."""
    from benchmarks.drift import make_frame
    from core.telemetry import RequestRecord
    from core.telemetry_store import SqliteTelemetryStore

    monitors, data = folder / "monitors", folder / "data"
    monitors.mkdir()
    reference = make_frame(rows, current=False)
    reference.to_parquet(monitors / "reference.parquet")
    (monitors / f"{MONITOR}.yaml").write_text(spec_text(list(reference.columns)))
    del reference
    current = make_frame(rows, current=True)
    current.to_parquet(folder / "window.parquet")
    store = SqliteTelemetryStore(data / "telemetry.sqlite")
    step = HOUR / rows
    for start in range(0, rows, batch):
        part = current.iloc[start:start + batch].to_dict("records")
        store.write([RequestRecord(time=ORIGIN + (start + i) * step, request_id=f"r{start + i}", endpoint="bench-ep",
                                   deployment="blue", model_version="1", inputs=_plain(row), prediction=None,
                                   score=None, latency_ms=5.0, status_code=200) for i, row in enumerate(part)])


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}  # NaN: missing


def worker(folder: Path) -> dict[str, Any]:
    """In a new process: the app on the embedded defaults; the hour checked cold, then again (warm)."""
    os.environ.update(MLOPS_DATA_DIR=str(folder / "data"), MLOPS_MONITORS_DIR=str(folder / "monitors"),
                      CHECK_SCHEDULE="0 0 0 1 1 *", TRACK_SCHEDULE="0 0 0 1 1 *")  # timers never due here
    import bootstrap
    import function_app
    from core.clock import ManualClock
    from core.settings import Settings
    from core.types import Window
    from devhost.host import DevHost
    from monitors import windows

    clock = ManualClock(ORIGIN + 2 * HOUR)
    box = bootstrap.configure(Settings(), clock=clock)
    host = DevHost(function_app.app, bus=box.bus, clock=clock, keys_path=folder / "data" / "keys.json")
    window = Window(ORIGIN, ORIGIN + HOUR)
    try:
        out: dict[str, Any] = {}
        for kind, force in (("cold", False), ("warm", True)):
            started = time.perf_counter()
            asked = box.request_check(MONITOR, window, force=force)
            host.drain()
            out[f"{kind}_s"] = time.perf_counter() - started
            record = box.get_check(asked["check_id"])
            state = windows.load(box.store, MONITOR, window).state  # done once its events were relayed
            if record.get("rows") is None or state != windows.DONE:
                raise RuntimeError(f"the {kind} check did not complete: {record.get('status')}, window {state}")
            out[f"{kind}_rows"] = record["rows"]
            out["dataset_drift"] = record["summary"]["dataset_drift"]
        return out
    finally:
        host.stop()


def measure(rows: int, repeat: int, evidently: bool) -> dict[str, Any]:
    from benchmarks.drift import timed

    runs: dict[str, list[float]] = {"cold": [], "warm": [], "process": [], "evidently": []}
    peaks: dict[str, float] = {"ours": 0.0, "evidently": 0.0}
    detail: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        prepare(rows, folder)
        write_s = time.perf_counter() - started
        for _ in range(repeat):
            for cached in ("profiles", "references", "state.sqlite", "bus.sqlite"):  # cold: nothing kept
                _remove(folder / "data" / cached)
            seconds, peak, out = timed([sys.executable, "-m", "benchmarks.service", "--worker", str(folder)])
            detail = json.loads(out.strip().splitlines()[-1])
            runs["process"].append(seconds)
            runs["cold"].append(detail["cold_s"])
            runs["warm"].append(detail["warm_s"])
            peaks["ours"] = max(peaks["ours"], peak)
            if evidently:
                try:
                    seconds, peak, _ = timed([sys.executable, "-m", "benchmarks.drift", "--worker",
                                              str(folder / "monitors" / "reference.parquet"),
                                              str(folder / "window.parquet")])
                except RuntimeError as exc:  # e.g. killed for memory on a shared machine: ours still printed
                    print(f"evidently failed: {exc}", file=sys.stderr)
                    continue
                runs["evidently"].append(seconds)
                peaks["evidently"] = max(peaks["evidently"], peak)
    med = {k: round(statistics.median(v), 3) if v else None for k, v in runs.items()}
    line = {"rows": rows, "repeat": repeat, "write_s": round(write_s, 1), "ours_cold_s": med["cold"],
            "ours_warm_s": med["warm"], "ours_process_s": med["process"], "evidently_s": med["evidently"],
            "ours_peak_mb": round(peaks["ours"], 1), "evidently_peak_mb": round(peaks["evidently"], 1) or None,
            "rows_checked": detail.get("warm_rows"), "dataset_drift": detail.get("dataset_drift")}
    if runs["evidently"]:
        line.update(speedup_cold=round(med["evidently"] / med["cold"], 1),
                    speedup_warm=round(med["evidently"] / med["warm"], 1),
                    speedup_process=round(med["evidently"] / med["process"], 1))
    return line


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if candidate.is_file():
            candidate.unlink()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        try:
            print(json.dumps(worker(Path(argv[1]))))
        except Exception:  # noqa: BLE001 - the parent shows this process's stderr
            import traceback

            traceback.print_exc()
            return 3  # exit 1 means "drift found" to benchmarks.drift.timed
        return 0
    cli = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__.splitlines()[0])
    cli.add_argument("--rows", type=int, default=1_000_000, help="requests in the checked hour (and reference rows)")
    cli.add_argument("--repeat", type=int, default=3)
    cli.add_argument("--skip-evidently", action="store_true")
    args = cli.parse_args(argv)
    print(json.dumps(measure(args.rows, args.repeat, not args.skip_evidently)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
