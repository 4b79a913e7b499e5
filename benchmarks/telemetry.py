"""Converting a Log Analytics answer: the SDK's row objects vs our columnar decoding, from the same payload.

    python -m benchmarks.telemetry --rows 1000000
    python -m benchmarks.telemetry --local --rows 1000000

Both sides go through a real LogsQueryClient whose transport serves one recorded-shape JSON payload:
`sdk_rows_s` is `query_workspace` until its LogsTable rows exist (no frame yet), `sdk_frame_s` adds what a
caller then needs for a frame (DataFrame from the rows, inputs JSON decoded); `columnar_s` is
`LogAnalyticsTelemetrySource.fetch` until its TelemetryBatch exists (typed, validated feature columns).
With --local: the local store's fetch of a window (typed columns) beside pyarrow reading the same rows from
one Parquet file, warm (in one process) and cold (the first read of a fresh process); see run_local.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import time
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
COLUMNS = [("TimeGenerated", "datetime"), ("RequestId", "string"), ("Deployment", "string"),
           ("ModelVersion", "string"), ("Inputs", "string"), ("Prediction", "string"), ("Score", "real"),
           ("LatencyMs", "real"), ("StatusCode", "int"), ("Generation", "string"), ("Label", "string")]


def payload(rows: int, numeric: int, seed: int = 0) -> bytes:
    """A Log Analytics query response of `rows` requests over one day, 7-digit times like the service."""
    _, table = generate(rows, numeric, seed)
    return msgspec.json.encode({"tables": [{"name": "PrimaryResult",
                                            "columns": [{"name": n, "type": t} for n, t in COLUMNS],
                                            "rows": table}]})


def generate(rows: int, numeric: int, seed: int = 0) -> tuple[list[int], list[list]]:
    """(request times in epoch microseconds, response rows in COLUMNS order)."""
    rng = np.random.default_rng(seed)
    micros = np.sort(rng.integers(0, 86_400_000_000, rows))
    start = np.datetime64("2024-03-01T00:00:00", "us")
    stamps = np.datetime_as_string(start + micros.astype("timedelta64[us]"), unit="us")
    values = np.round(rng.normal(size=(rows, numeric)), 4).tolist()
    origins = np.array(["JFK", "LGA", "EWR"])[rng.integers(0, 3, rows)].tolist()
    latency = np.round(rng.gamma(2.0, 20.0, rows), 2).tolist()
    table = []
    for i in range(rows):
        inputs = "{" + ",".join(f'"x{j}":{v}' for j, v in enumerate(values[i])) + f',"origin":"{origins[i]}"}}'
        table.append([stamps[i] + "0Z", f"req-{i}", "blue", "3", inputs, str(i % 2), 0.5, latency[i], 200, None,
                      str(i % 2) if i % 4 == 0 else ""])
    return (micros + int(start.astype(np.int64))).tolist(), table


class ReplayTransport:
    """Serves `body` to every row query and the row count to every count query."""

    def __init__(self, body: bytes, rows: int) -> None:
        self.body = body
        self.count = json.dumps({"tables": [{"name": "PrimaryResult", "columns": [{"name": "Count", "type": "long"}],
                                             "rows": [[rows]]}]}).encode()

    def send(self, request, **kwargs):
        import requests
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        body = self.count if json.loads(request.content)["query"].rstrip().endswith("| count") else self.body
        raw = requests.Response()
        raw.status_code, raw.raw, raw.reason = 200, io.BytesIO(body), "OK"
        raw.headers["Content-Type"] = "application/json"
        response = RestRequestsTransportResponse(request=request, internal_response=raw, block_size=1 << 20)
        response.read()
        return response

    def open(self): ...
    def close(self): ...
    def __enter__(self): return self
    def __exit__(self, *args): ...


class Token:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        return AccessToken("benchmark", int(time.time()) + 3600)


def _timed(fn):
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run(rows: int, numeric: int) -> dict:
    from azure.core.pipeline.transport import HttpTransport
    from azure.monitor.query import LogsQueryClient

    from core.types import EndpointRef, Window
    from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource

    body = payload(rows, numeric)
    transport = type("Replay", (ReplayTransport, HttpTransport), {})(body, rows)
    window = Window(T0, T0 + timedelta(days=1))
    client = LogsQueryClient(Token(), transport=transport)
    source = LogAnalyticsTelemetrySource("ws", client=client, features=_features(numeric), max_rows_per_query=rows * 2,
                                         now=lambda: T0 + timedelta(days=2))
    batch, columnar_s = _timed(lambda: source.fetch(EndpointRef("flights"), window))
    del batch
    result, sdk_rows_s = _timed(lambda: client.query_workspace("ws", "MLRequests_CL", timespan=(window.start,
                                                                                                  window.end)))
    _, frame_s = _timed(lambda: _sdk_frame(result.tables[0]))
    assert len(result.tables[0].rows) == rows
    return {"rows": rows, "payload_mb": round(len(body) / 1e6, 1), "features": numeric + 1,
            "sdk_rows_s": round(sdk_rows_s, 3), "sdk_frame_s": round(sdk_rows_s + frame_s, 3),
            "columnar_s": round(columnar_s, 3), "speedup": round(sdk_rows_s / columnar_s, 2),
            "speedup_vs_sdk_frame": round((sdk_rows_s + frame_s) / columnar_s, 2)}


def _sdk_frame(table):
    import pandas as pd

    frame = pd.DataFrame(table.rows, columns=table.columns)
    inputs = pd.DataFrame.from_records([json.loads(x) for x in frame.pop("Inputs")])
    return pd.concat([frame, inputs], axis=1)


def run_local(rows: int, numeric: int, batch: int = 1000, repeat: int = 5, cold: int = 5) -> dict:
    """LocalTelemetrySource.fetch of one window of `rows` requests, beside pyarrow reading the same rows
    from one Parquet file (the floor). The store is filled first, untimed, through its own write path in
    batches of `batch` requests (what the local endpoint and the scoring-script logger do); a quarter of
    the requests have a label.

    Warm: medians of `repeat` reads in this process, the two sides alternately and in alternating order
    (the first big read of a process also pays for memory it touches for the first time). Cold: medians of
    `cold` first reads, each in a fresh process that has imported the same libraries (see cold_once).
    """
    import statistics
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    from core.telemetry_store import SqliteTelemetryStore
    from core.types import EndpointRef, Window
    from monitors.telemetry.local import LocalTelemetrySource

    with tempfile.TemporaryDirectory() as folder:
        store = SqliteTelemetryStore(Path(folder) / "telemetry.sqlite")
        write_s = _fill(store, rows, numeric, batch)
        source = LocalTelemetrySource(store, _features(numeric))
        window = Window(T0, T0 + timedelta(days=1))
        floor = Path(folder) / "window.parquet"
        pq.write_table(store.read_window("flights", window.start, window.end), floor)  # the same rows, one file
        sides = {"fetch": lambda: source.fetch(EndpointRef("flights"), window), "read": lambda: pq.read_table(floor)}
        runs: dict[str, list[float]] = {"fetch": [], "read": [], "fetch_cold": [], "read_cold": []}
        for i in range(repeat):
            for side in ("fetch", "read") if i % 2 == 0 else ("read", "fetch"):
                result, seconds = _timed(sides[side])
                assert side == "read" or result.rows == rows, result.rejected
                runs[side].append(seconds)
                del result
        for i in range(cold):
            for side in ("fetch", "read") if i % 2 == 0 else ("read", "fetch"):
                runs[f"{side}_cold"].append(_cold(side, Path(folder), numeric))
        segments = len(list(store.segments.rglob("*.parquet")))
    m = {side: statistics.median(seconds) for side, seconds in runs.items()}
    return {"rows": rows, "features": numeric + 1, "write_batch": batch, "segments": segments,
            "write_s": round(write_s, 1), "fetch_s": round(m["fetch"], 3), "parquet_read_s": round(m["read"], 3),
            "fetch_over_parquet_read": round(m["fetch"] / m["read"], 2), "rows_per_s": int(rows / m["fetch"]),
            "fetch_cold_s": round(m["fetch_cold"], 3), "parquet_read_cold_s": round(m["read_cold"], 3),
            "cold_fetch_over_parquet_read": round(m["fetch_cold"] / m["read_cold"], 2),
            **{f"{side}_runs_s": [round(x, 3) for x in seconds] for side, seconds in runs.items()}}


def _fill(store, rows: int, numeric: int, batch: int) -> float:
    """The store written through its own write path; returns the seconds it took."""
    from core.telemetry import LabelRecord, RequestRecord

    micros, table = generate(rows, numeric)
    started = time.perf_counter()
    for i in range(0, rows, batch):
        store.write([RequestRecord(time=_at(micros[j]), request_id=table[j][1], endpoint="flights",
                                   deployment=table[j][2], model_version=table[j][3],
                                   inputs=json.loads(table[j][4]), prediction=float(table[j][5]),
                                   score=table[j][6], latency_ms=table[j][7], status_code=table[j][8])
                     for j in range(i, min(i + batch, rows))])
    store.write_labels([LabelRecord(table[j][1], int(table[j][10]), _at(micros[j]) + timedelta(days=1))
                        for j in range(rows) if table[j][10]])
    return time.perf_counter() - started


def _features(numeric: int) -> dict[str, str]:
    return {**{f"x{j}": "numeric" for j in range(numeric)}, "origin": "categorical"}


def _cold(side: str, folder, numeric: int) -> float:
    """One side's first read in a fresh process (see cold_once)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "benchmarks.telemetry", "--cold-once", side, "--folder", str(folder),
                          "--numeric", str(numeric)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def cold_once(side: str, folder: str, numeric: int) -> float:
    """The seconds of one read in this (fresh) process. Both sides import the libraries first (pandas and
    pyarrow's compute, dataset and parquet modules: pq.read_table imports pyarrow.dataset on its first call),
    so neither pays for loading a library the other has loaded already."""
    from pathlib import Path

    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet as pq

    if side == "read":
        return _timed(lambda: pq.read_table(Path(folder) / "window.parquet"))[1]
    from core.telemetry_store import SqliteTelemetryStore
    from core.types import EndpointRef, Window
    from monitors.telemetry.local import LocalTelemetrySource

    source = LocalTelemetrySource(SqliteTelemetryStore(Path(folder) / "telemetry.sqlite"), _features(numeric))
    batch, seconds = _timed(lambda: source.fetch(EndpointRef("flights"), Window(T0, T0 + timedelta(days=1))))
    assert batch.rows and not batch.rejected, batch.rejected
    return seconds


def _at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m benchmarks.telemetry", description=__doc__.splitlines()[0])
    cli.add_argument("--rows", type=int, default=1_000_000)
    cli.add_argument("--numeric", type=int, default=10, help="numeric features per request (plus one categorical)")
    cli.add_argument("--local", action="store_true", help="measure the local store's fetch instead")
    cli.add_argument("--cold-once", choices=("fetch", "read"), help=argparse.SUPPRESS)  # a child of --local
    cli.add_argument("--folder", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    if args.cold_once:
        print(cold_once(args.cold_once, args.folder, args.numeric))
        return 0
    print(json.dumps(run_local(args.rows, args.numeric) if args.local else run(args.rows, args.numeric)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
