"""Azure ML's data collector agent, on loopback: what a scoring script's `azureml.ai.monitoring.Collector` sends
is written where and how Azure ML writes it to the workspace blob store.

In Azure a sidecar beside each deployment receives the collector's POSTs (`/modeldata/log`, CloudEvents-style
`ce-*` headers, the DataFrame as JSON records) and appends one JSON line per payload to
`modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/<instance>.jsonl`. Here one agent
per local deployment does the same under the data folder, stamping each line with the endpoint's clock (so a
replay on a simulated clock files its data by simulated hour). Readers of the Azure layout read this folder too.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from core.clock import Clock
from core.types import utc

ROOT_FOLDER = "modelDataCollector"
PREFIX = "azureml.inference."
MAX_PAYLOAD = 64 * 1024 * 1024
log = logging.getLogger("mlops.datacollector")


def config_json(collections: dict[str, Any]) -> dict[str, Any]:
    """The agent config a scoring script's Collector reads (AZUREML_MDC_CONFIG_PATH), from the deployment's
    data collector settings: {"model_inputs": {"enabled": true, "sampling_rate": 1.0}, ...}."""
    out = {}
    for name, settings in collections.items():
        settings = settings or {}
        rate = float(settings.get("sampling_rate", 1.0))
        out[name] = {"enabled": str(settings.get("enabled", True)).lower() == "true",
                     "sampleRatePercentage": round(rate * 100)}
    return {"collections": out, "runMode": "cloud"}


class LocalDataCollector:
    """One deployment's agent: a small HTTP server on loopback appending JSON lines under `root`."""

    def __init__(self, root: str | Path, endpoint: str, deployment: str, clock: Clock, *, host: str = "127.0.0.1",
                 port: int = 0, source: str | None = None) -> None:
        self.root, self.endpoint, self.deployment, self.clock = Path(root), endpoint, deployment, clock
        self.source = source or f"/local/onlineEndpoints/{endpoint}/deployments/{deployment}"
        self.instance = uuid.uuid4().hex  # one file per agent and hour, as each Azure instance has its own
        self.written = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> "LocalDataCollector":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"data collector {self.endpoint}/{self.deployment}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def folder(self, collection: str) -> Path:
        return self.root / ROOT_FOLDER / self.endpoint / self.deployment / collection

    def append(self, headers: Any, body: bytes) -> Path:
        """One payload -> one JSON line; raises ValueError for a payload the agent cannot file."""
        kind = headers.get("ce-type") or ""
        if not kind.startswith(PREFIX):
            raise ValueError(f"ce-type must start with {PREFIX!r}, got {kind!r}")
        collection = kind[len(PREFIX):]
        if not collection or "/" in collection or collection.startswith("."):
            raise ValueError(f"bad collection name {collection!r}")
        data = json.loads(body)  # the collector sends the DataFrame as JSON records
        now = utc(self.clock.now())
        line = {"specversion": "1.0", "id": headers.get("trace-id") or str(uuid.uuid4()), "source": self.source,
                "type": kind, "datacontenttype": "application/json", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "data": data, "correlationid": headers.get("ce-x-request-id") or "",
                "xrequestid": headers.get("ce-x-request-id") or "",
                "modelversion": headers.get("ce-model-version") or "default",
                "collectdatatype": headers.get("ce-collect-data-type") or "",
                "agent": headers.get("ce-agent") or "", "contentrange": f"bytes 0-{len(body) - 1}/{len(body)}"}
        path = self.folder(collection) / now.strftime("%Y/%m/%d/%H") / f"{self.instance}.jsonl"
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text)
            self.written += 1
        return path


def _handler_for(agent: LocalDataCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if self.path != "/modeldata/log":
                return self._send(404, f"no route POST {self.path}")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_PAYLOAD:
                self.close_connection = True
                return self._send(400, f"Content-Length must be 1..{MAX_PAYLOAD}")
            body = self.rfile.read(length)
            try:
                agent.append(self.headers, body)
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("data collector %s/%s refused a payload: %s", agent.endpoint, agent.deployment, exc)
                return self._send(400, str(exc))
            self._send(200, "ok")

        def _send(self, code: int, text: str) -> None:
            payload = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Payloads are the record; no access log."""

    return Handler
