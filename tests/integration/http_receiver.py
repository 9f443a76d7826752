"""A small HTTP server on 127.0.0.1 that records every request, for webhook and ping tests.

    with HttpReceiver() as rx:
        rx.behave("/flaky", ["500", "200"])     # answers, in order; the last one repeats
        rx.behave("/gone", ["404"])
        rx.behave("/slow", ["hang"])            # never answers (until the receiver stops)
        rx.behave("/echo", ["404 Cannot {method} {path}"])  # a status and a body; {method} and {path} filled in,
                                                # as some frameworks' error pages repeat the request line
        url = rx.url("/flaky")
        ...
        rx.requests  # [Request(method, path, headers, body)]
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class HttpReceiver:
    def __init__(self):
        self.requests: list[Request] = []
        self._plans: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = receiver._record(Request(self.command, self.path, dict(self.headers.items()), body))
                if answer == "hang":
                    receiver._release.wait(60)
                    return
                code, _space, text = answer.partition(" ")
                code = int(code)
                if text:
                    payload = text.format(method=self.command, path=self.path).encode("utf-8")
                else:
                    payload = b"OK" if code < 300 else b"error"
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, request: Request) -> str:
        with self._lock:
            self.requests.append(request)
            for prefix in sorted(self._plans, key=len, reverse=True):
                if request.path.startswith(prefix):
                    plan = self._plans[prefix]
                    return plan.pop(0) if len(plan) > 1 else plan[0]
            return "200"

    def behave(self, prefix: str, answers: list[str]):
        with self._lock:
            self._plans[prefix] = list(answers)

    def url(self, path: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def on(self, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
