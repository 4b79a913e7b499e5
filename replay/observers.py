"""What the demo watches from outside the product: a webhook receiver for alerts and the audit feed."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
    """Reads the app's audit trail (every event it published, kept by its `audit` consumer), in order."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.events: list[Any] = []
        self._seen: set[str] = set()

    def poll(self) -> list[Any]:
        from core.records import audited_events

        fresh = [e for e in audited_events(self.store) if e.id not in self._seen]
        self._seen.update(e.id for e in fresh)
        self.events += fresh
        return fresh

    def of(self, *types: str) -> list[Any]:
        return [e for e in self.events if e.type in types]
