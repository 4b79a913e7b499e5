"""What the demo watches from outside the product: a webhook receiver for alerts and the audit feed."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.routing import TOPIC
from core.servicebus import from_received


class WebhookReceiver:
    """A loopback HTTP server standing in for a team's alert channel."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(json.loads(body or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet: the demo prints its own summary."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class AuditFeed:
    """Reads the bus's catch-all `audit` subscription: every event the app published, in order."""

    def __init__(self, bus: Any) -> None:
        self.bus, self.entity = bus, f"{TOPIC}/subscriptions/audit"
        self.events: list[Any] = []

    def poll(self) -> list[Any]:
        fresh = []
        while True:
            batch = self.bus.receive(self.entity, max_messages=100)
            if not batch:
                return fresh
            for received in batch:
                fresh.append(from_received(received))
                self.bus.complete(received.lock_token)
            self.events += fresh[-len(batch):]

    def of(self, *types: str) -> list[Any]:
        return [e for e in self.events if e.type in types]
