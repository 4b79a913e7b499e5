"""What the demo watches from outside the product: a webhook receiver for alerts and the audit feed."""
from __future__ import annotations

import json
import threading
from datetime import timedelta
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
    """Reads the app's audit trail (every event it published, kept by its `audit` consumer), in order.

    With the replay's clock, a poll reads only the days since the previous poll (and the day before it, for
    events recorded a little late): reading the whole trail at every block of traffic made the replay
    quadratic in its events. `poll(full=True)` reads all of it, so nothing is left out at the end.
    """

    def __init__(self, store: Any, clock: Any = None) -> None:
        self.store, self.clock = store, clock
        self.events: list[Any] = []
        self._seen: set[str] = set()
        self._last_day: Any = None

    def poll(self, *, full: bool = False) -> list[Any]:
        from core.records import audited_events

        today = self.clock.now().date() if self.clock is not None else None
        if full or today is None or self._last_day is None:
            prefixes = [""]
        else:
            first = self._last_day - timedelta(days=1)
            prefixes = [f"{first + timedelta(days=n):%Y-%m-%d}" for n in range((today - first).days + 1)]
        self._last_day = today
        found = [e for prefix in prefixes for e in audited_events(self.store, prefix)]
        fresh = sorted((e for e in found if e.id not in self._seen), key=lambda e: (e.time, e.id))
        self._seen.update(e.id for e in fresh)
        self.events += fresh
        return fresh

    def of(self, *types: str) -> list[Any]:
        return [e for e in self.events if e.type in types]
