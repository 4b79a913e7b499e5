"""A local OpenAI-compatible (Azure OpenAI) chat completions server for the judge tests.

It records every request (path, headers, body) and answers from a script: "ok" (a judge JSON answer with
a score), "429" (rate limited), "500", "garbage" (an answer that is not JSON); `delay` seconds before every
answer (a judge that times out). Loopback only.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JudgeServer:
    def __init__(self, script: list[str] | None = None, score: int = 4, delay: float = 0.0) -> None:
        self.script, self.score, self.requests, self.delay = list(script or []), score, [], delay
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    mode = outer.script.pop(0) if outer.script else "ok"
                time.sleep(outer.delay)
                if mode in ("429", "500"):
                    return self._send(int(mode), {"error": {"code": mode, "message": "try later"}},
                                      {"Retry-After": "0"})
                content = (json.dumps({"reason": "Let's think step by step: fine.", "score": outer.score,
                                       "status": "completed"}) if mode == "ok" else "I would rate it highly!")
                self._send(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})

            def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                   **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "JudgeServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
