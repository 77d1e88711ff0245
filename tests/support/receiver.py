"""A local HTTP endpoint for webhooks: answers the CloudEvents validation handshake and
records what it receives; it can fail, delay or ask for a Retry-After on request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Behaviour:
    fail_first: int = 0          # answer 500 to this many POSTs first
    status: int = 200            # then answer this
    delay: float = 0.0           # seconds before answering
    retry_after: str | None = None
    allow_origin: bool = True    # answer the validation handshake


@dataclass
class Receiver:
    port: int
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, **behaviour) -> str:
        self.behaviour[path] = Behaviour(**behaviour)
        return self.url(path)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _behaviour(self) -> Behaviour:
            return state.behaviour.get(self.path, Behaviour())

        def do_OPTIONS(self) -> None:  # noqa: N802 - the http.server naming
            if self._behaviour().allow_origin:
                self.send_response(200)
                self.send_header("WebHook-Allowed-Origin",
                                 self.headers.get("WebHook-Request-Origin", "*"))
            else:
                self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            b = self._behaviour()
            with state.lock:
                n = state.attempts[self.path] = state.attempts.get(self.path, 0) + 1
                state.received.append(Received(self.path, {k.lower(): v for k, v in
                                                           self.headers.items()}, body,
                                               time.monotonic()))
            if b.delay:
                time.sleep(b.delay)
            status = 500 if n <= b.fail_first else b.status
            self.send_response(status)
            if b.retry_after and status >= 400:
                self.send_header("Retry-After", b.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
