"""The local endpoint: a deployment's start-up, its memory, and a request through the front to Azure ML's
inference server, against scoring the same rows in-process with mlflow.pyfunc (what the front did before).

    python -m benchmarks.serving --rows 200 --requests 40

Cold: the first deployment, which also starts the serving environment's zygote (its libraries imported once);
warm: a second deployment, forked from it. Memory: what the first deployment's processes hold alone (USS).
The front's time is the whole request (JSON, routing, the deployment's round trip, telemetry written); in-process
is `mlflow.pyfunc` predict alone on the same rows. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    import psutil

    from core.clock import ManualClock
    from core.telemetry_store import SqliteTelemetryStore
    from core.types import EndpointRef
    from retrain.components._lib import feature_frame
    from retrain.deploy import LocalDeployer
    from retrain.endpoint import LocalEndpoint
    from retrain.registry import LocalModelRegistry
    from tests.unit._retrain_data import FEATURES, months, register_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = LocalModelRegistry(root / "registry")
        v1 = register_model(registry, 1, 3)
        deployer = LocalDeployer(root / "endpoints.json", registry)
        deployer.start_canary(EndpointRef("bench"), v1, 10)
        clock = ManualClock(datetime(2013, 6, 1, tzinfo=timezone.utc))
        rows = months(6, 6, args.rows, seed=1)
        columns = list(FEATURES)
        data = [[None if v != v else v for v in row] for row in rows[columns].astype(object).values.tolist()]
        with LocalEndpoint("bench", root / "endpoints.json", registry, SqliteTelemetryStore(root / "t.sqlite"),
                           clock) as endpoint:
            cold = endpoint.servers.server("blue")
            memory = _uss(psutil, cold._proc.pid)
            front = _latencies(endpoint, columns, data, args.requests)
            cold_s = cold.ready_after_s
            deployer.state.save(_with_second(deployer.state.read()))  # a second deployment, no traffic
            endpoint.sync()
            warm_s = endpoint.servers.server("green").ready_after_s
        in_process = _in_process(registry, v1, feature_frame(rows, FEATURES), args.requests)
    front_ms, local_ms = statistics.median(front), statistics.median(in_process)
    print(json.dumps({"benchmark": "serving", "rows_per_request": args.rows, "requests": args.requests,
                      "startup_cold_s": round(cold_s, 2), "startup_warm_s": round(warm_s, 2),
                      "server_uss_mb": round(memory / 2**20, 1), "front_median_ms": round(front_ms, 2),
                      "in_process_median_ms": round(local_ms, 2),
                      "front_vs_in_process": round(front_ms / local_ms, 2)}))


def _latencies(endpoint, columns, data, requests: int) -> list[float]:
    host, port = endpoint.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    out = []
    for i in range(requests + 3):
        body = json.dumps({"input_data": {"columns": columns, "data": data},
                           "request_ids": [f"r{i}-{k}" for k in range(len(data))]})
        started = time.perf_counter()
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the endpoint answered {response.status}")
        if i >= 3:  # the first requests warm the server's code paths
            out.append((time.perf_counter() - started) * 1000)
    conn.close()
    return out


def _in_process(registry, version, frame, requests: int) -> list[float]:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(registry.model_path(version)))
    out = []
    for i in range(requests + 3):
        started = time.perf_counter()
        model.predict(frame)
        if i >= 3:
            out.append((time.perf_counter() - started) * 1000)
    return out


def _with_second(state: dict) -> dict:
    ep = state["endpoints"]["bench"]
    ep["deployments"]["green"] = dict(ep["deployments"]["blue"])
    ep["traffic"]["green"] = 0
    return state


def _uss(psutil, pid: int) -> int:
    """Memory the deployment's processes (gunicorn's master and worker) hold alone: pages shared with the zygote
    and with other deployments are not counted."""
    process = psutil.Process(pid)
    return sum(p.memory_full_info().uss for p in [process, *process.children(recursive=True)])


if __name__ == "__main__":
    main()
