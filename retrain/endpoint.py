"""The local endpoint: the traffic-splitting front of an Azure ML online endpoint, on loopback.

POST /score  {"input_data": {"columns": [...], "data": [[...], ...]}, "request_ids": [...]}
  -> {"predictions": [...], "scores": [...], "deployments": [...], "model_versions": [...], "status_codes": [...]}
GET /health  -> {"status": "ok", "traffic": {...}, "models": {...}, "servers": {...}}

Each row is routed to a deployment by the traffic split, deterministically from a hash of its request id
(so a replay routes the same way). Each deployment is Azure ML's own inference server in a process of its own
(`retrain.serving`), running the deployment's scoring script; the front sends it its rows in the body Azure ML
deployments take, reads the predictions back, and logs every row as a RequestRecord with the injected clock's
time and the round trip as latency. The header `azureml-model-deployment` pins a deployment, as in Azure.
Faults (error rate, extra latency) configured on a deployment, or on a model for every deployment
serving it, make the local endpoint misbehave on purpose (tests, the demo's bad canary).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

from core.clock import Clock
from core.errors import MlopsError, RetryableError, ValidationFailed
from core.telemetry import RequestRecord, TelemetrySink
from retrain.deploy import EndpointStateFile
from retrain.predictions import read_predictions
from retrain.serving import DeploymentSpec, DeploymentUnavailable, ServerPool

MAX_BODY = 16 * 1024 * 1024
MAX_UNSENT = 100_000
log = logging.getLogger("mlops.endpoint")


def bucket(request_id: str, salt: str = "") -> float:
    """A stable number in [0, 1) per request id."""
    digest = hashlib.sha256(f"{salt}{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route(request_id: str, traffic: dict[str, int]) -> str:
    point, total = bucket(request_id) * 100, 0
    live = [(name, share) for name, share in sorted(traffic.items()) if share > 0]
    for name, share in live:
        total += share
        if point < total:
            return name
    return live[-1][0]


def parse_body(body: bytes) -> tuple[list[str], list[list[Any]], list[str]]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"body is not JSON: {exc}", field="body") from exc
    data = doc.get("input_data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise ValidationFailed("input_data must be an object with columns and data", field="input_data")
    columns, rows, ids = data.get("columns"), data.get("data"), doc.get("request_ids")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ValidationFailed("input_data.columns must be a list of names", field="input_data.columns")
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise ValidationFailed("input_data.data must be rows with one value per column", field="input_data.data")
    if not isinstance(ids, list) or len(ids) != len(rows) or not all(isinstance(i, str) and i for i in ids):
        raise ValidationFailed("request_ids must be one non-empty string per row", field="request_ids")
    return columns, rows, ids


class LocalEndpoint:
    """`python` is the serving environment (default: the repository's .venv-serve); deployments' logs, data
    collector configs and collected data go under the state file's folder."""

    def __init__(self, name: str, state_path: str | Path, registry: Any, sink: TelemetrySink, clock: Clock,
                 *, host: str = "127.0.0.1", port: int = 0, python: str | None = None,
                 start_timeout_s: float = 180.0) -> None:
        self.name, self.registry, self.sink, self.clock = name, registry, sink, clock
        self.state = EndpointStateFile(state_path)
        self.servers = ServerPool(name, registry, clock, work_dir=Path(state_path).parent / "serving",
                                  python=python, start_timeout_s=start_timeout_s)
        self._unsent: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalEndpoint":
        self.traffic()  # deployments already there start now, not on the first request
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"endpoint {self.name}",
                                        daemon=True)
        self._thread.start()
        threading.Thread(target=self._follow, name=f"endpoint {self.name} deployments", daemon=True).start()
        return self

    def _follow(self, every_s: float = 0.2) -> None:
        """A deployment the deployer creates starts at once, as in Azure, not when traffic first reaches it."""
        seen = None
        while not self._stopping.wait(every_s):
            try:
                stamp = self.state.path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if stamp != seen:
                seen = stamp
                self.traffic()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._unsent:
            self._log([])  # what telemetry could not take yet gets one more try
        self.servers.close()

    def sync(self) -> dict[str, str]:
        """Start the servers of deployments that appeared, stop those of removed ones; returns their states."""
        self.traffic()
        return self.servers.status()

    def __enter__(self) -> "LocalEndpoint":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def traffic(self) -> tuple[dict[str, int], dict[str, str], dict[str, dict]]:
        """The split, each deployment's model and the faults; keeps the deployments' servers in step."""
        state = self.state.read()
        ep = state["endpoints"].get(self.name, {})
        specs = {name: DeploymentSpec.from_state(d) for name, d in ep.get("deployments", {}).items()}
        self.servers.sync(specs)
        return dict(ep.get("traffic", {})), {n: s.model for n, s in specs.items()}, state.get("faults", {})

    def score(self, columns: list[str], rows: list[list[Any]], ids: list[str],
              pinned: str | None = None) -> tuple[int, dict[str, Any]]:
        traffic, models, faults = self.traffic()
        if pinned is not None and pinned not in models:
            return 404, {"error": f"no deployment {pinned!r} on {self.name}"}
        if not any(share > 0 for share in traffic.values()) and pinned is None:
            return 503, {"error": f"endpoint {self.name} has no deployment taking traffic"}
        chosen = [pinned or route(rid, traffic) for rid in ids]
        out: dict[str, list] = {k: [None] * len(ids) for k in
                                ("predictions", "scores", "deployments", "model_versions", "status_codes")}
        records: list[RequestRecord] = []
        for deployment in sorted(set(chosen)):
            index = [i for i, d in enumerate(chosen) if d == deployment]
            model = models[deployment]
            fault = faults.get(deployment) or faults.get(model) or {}
            records += self._score_group(deployment, model, fault, columns,
                                         [rows[i] for i in index], [ids[i] for i in index], index, out)
        self._log(records)
        ok = any(code == 200 for code in out["status_codes"])
        return (200 if ok or not ids else 500), out

    def _log(self, records: list[RequestRecord]) -> None:
        """Telemetry down must not fail scoring: keep unsent records (bounded) and send them next time."""
        with self._lock:
            batch, self._unsent = self._unsent + records, []
            try:
                self.sink.write(batch)
            except RetryableError as exc:
                self._unsent = batch[-MAX_UNSENT:]
                log.warning("telemetry sink unavailable, %d records kept for the next write: %s", len(batch), exc)

    def _score_group(self, deployment: str, model_ref: str, fault: dict, columns: list[str], rows: list[list[Any]],
                     ids: list[str], index: list[int], out: dict[str, list]) -> list[RequestRecord]:
        failing = [bucket(rid, "fault:") < fault.get("error_rate", 0.0) for rid in ids]
        results: list[tuple[int, Any, float | None]] = [(500, None, None)] * len(ids)
        sent = [k for k, fails in enumerate(failing) if not fails]
        try:
            server = self.servers.server(deployment)  # waits for a starting server: not its scoring latency
            missing = [c for c in server.columns if c not in columns]
            if missing:
                raise ValidationFailed(f"input_data.columns lacks feature(s) {', '.join(missing)}",
                                       field="input_data.columns")
            started = time.perf_counter()
            if sent:
                results = self._forward(server, columns, [rows[k] for k in sent], [ids[k] for k in sent],
                                        results, sent)
        except DeploymentUnavailable as exc:
            log.warning("%s", exc)
            started, results = time.perf_counter(), [(503, None, None)] * len(ids)
        if fault.get("extra_latency_ms"):
            time.sleep(fault["extra_latency_ms"] / 1000.0)
        latency = (time.perf_counter() - started) * 1000.0
        now = self.clock.now()
        records = []
        for k, i in enumerate(index):
            code, prediction, score = results[k]
            for key, value in (("predictions", prediction), ("scores", score), ("deployments", deployment),
                               ("model_versions", model_ref), ("status_codes", code)):
                out[key][i] = value
            records.append(RequestRecord(time=now, request_id=ids[k], endpoint=self.name, deployment=deployment,
                                         model_version=model_ref, inputs=dict(zip(columns, rows[k], strict=True)),
                                         prediction=prediction, score=score, latency_ms=latency, status_code=code))
        return records

    def _forward(self, server: Any, columns: list[str], rows: list[list[Any]], ids: list[str],
                 results: list[tuple[int, Any, float | None]], positions: list[int]) -> list:
        """The rows to the deployment's server, in the body Azure ML deployments take; answers per row."""
        rows = conform(columns, rows, server.features)
        body = json.dumps({"input_data": {"columns": columns, "data": rows}, "request_ids": ids}).encode()
        status, answer = server.score(body)
        results = list(results)
        if status != 200:
            log.warning("deployment %s answered %s: %s", server.name, status, str(answer)[:300])
            for k in positions:
                results[k] = (status if status >= 400 else 500, None, None)
            return results
        try:
            answers = read_predictions(answer, len(rows), server.classes, server.task)
        except ValueError as exc:
            log.warning("deployment %s: %s", server.name, exc)
            answers = [None] * len(rows)
        for k, one in zip(positions, answers, strict=True):
            results[k] = (500, None, None) if one is None else (200, one[0], one[1])
        return results


def conform(columns: list[str], rows: list[list[Any]], kinds: dict[str, str]) -> list[list[Any]]:
    """Values as the model was trained on them (retrain/components/_lib.feature_frame): categoricals and texts as
    strings, numerics as numbers; missing stays missing, and a value that is no number is sent as it came."""
    casts = [(i, kinds[c]) for i, c in enumerate(columns) if c in kinds]
    if not casts:
        return rows
    out = []
    for row in rows:
        row = list(row)
        for i, kind in casts:
            value = row[i]
            if value is None or isinstance(value, bool):
                continue
            if kind in ("categorical", "text"):
                row[i] = str(value)
            elif isinstance(value, (int, str)):
                with contextlib.suppress(ValueError):  # not a number: the model's answer says so
                    row[i] = float(value)
        out.append(row)
    return out


def _handler_for(endpoint: LocalEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a replay reuses one connection

        def do_GET(self) -> None:
            if self.path != "/health":
                return self._send(404, {"error": f"no route GET {self.path}"})
            traffic, models, _ = endpoint.traffic()
            self._send(200, {"status": "ok", "endpoint": endpoint.name, "traffic": traffic, "models": models,
                             "servers": endpoint.servers.status()})

        def do_POST(self) -> None:
            if self.path != "/score":
                return self._send(404, {"error": f"no route POST {self.path}"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True  # the body is not read, so this connection cannot be reused
                return self._send(413 if length > MAX_BODY else 400,
                                  {"error": f"Content-Length must be 0..{MAX_BODY}", "field": "Content-Length"})
            body = self.rfile.read(length)
            try:
                columns, rows, ids = parse_body(body)
                code, result = endpoint.score(columns, rows, ids, self.headers.get("azureml-model-deployment"))
            except ValidationFailed as exc:
                return self._send(400, {"error": str(exc), "field": exc.field})
            except MlopsError as exc:  # e.g. a deployment's model missing from the registry
                return self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
            self._send(code, result)

        def _send(self, code: int, doc: dict[str, Any]) -> None:
            payload = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Sequence[Any]) -> None:
            """Requests are logged as telemetry, not to stderr."""

    return Handler
