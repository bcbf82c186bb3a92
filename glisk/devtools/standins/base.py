"""A threaded HTTP server (127.0.0.1 unless told otherwise) with a queue of faults to inject, for
stand-in APIs."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar


class RateLimit:
    """A provider's rate limit as its API gateway keeps it: a token bucket of `per_minute`
    requests a minute holding up to `burst`. `take()` admits a request, or says in how many
    seconds the next one would be admitted (what a 429 announces)."""

    def __init__(self, per_minute: float, burst: float):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.admitted = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self, cost: float = 1.0) -> float | None:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= cost:
                self.tokens -= cost
                self.admitted += 1
                return None
            self.refused += 1
            return (cost - self.tokens) / self.rate

    @property
    def remaining(self) -> int:
        with self._lock:
            return int(min(self.burst, self.tokens + (time.monotonic() - self.at) * self.rate))


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a slow answer (a timeout fault) is expected, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandInServer:
    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, public_url: str = "") -> None:
        """`public_url` is how clients reach it when that is not the bound address (a container
        bound to 0.0.0.0 and reached by its service name): the URLs it hands out use it."""
        self.faults: deque[str] = deque()
        self.limits: dict[str, RateLimit] = {}
        self.requests: list[dict[str, Any]] = []
        self.faults_served: Counter[str] = Counter()  # per kind, for the chaos suite's outcome lines
        self.lock = threading.Lock()
        server_self = self

        handler_base: Any = self.handler_class

        class Handler(handler_base):
            standin = server_self

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                try:
                    handler_base.do_POST(self)
                except BodyRejected as exc:
                    self.close_connection = True  # the unread body must not be taken for a request
                    send_json(self, exc.status, {"error": str(exc)})

        self.httpd = QuietServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = public_url.rstrip("/") or f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def limit(self, kind: str, per_minute: float | None, burst: float = 1.0) -> None:
        """Ration `kind` of requests as the real service does (None: no limit)."""
        if per_minute is None:
            self.limits.pop(kind, None)
        else:
            self.limits[kind] = RateLimit(per_minute, burst)

    def throttle(self, kind: str, cost: float = 1.0) -> float | None:
        """None when a request of `kind` is admitted, else the seconds until it would be."""
        bucket = self.limits.get(kind)
        return None if bucket is None else bucket.take(cost)

    @property
    def throttled_count(self) -> int:
        """Requests answered 429 by the rate limits."""
        return sum(bucket.refused for bucket in self.limits.values())

    def inject(self, *faults: str) -> None:
        """Each fault applies to one upcoming request, in order."""
        with self.lock:
            self.faults.extend(faults)

    random_faults: tuple[str, ...] = ()
    fault_rate = 0.0
    latency: tuple[float, float] = (0.0, 0.0)  # seconds added to every answer, uniformly drawn

    in_flight = 0
    max_in_flight = 0

    def delay(self) -> None:
        """Answer after `latency`, counting how many requests are being answered at once."""
        import random
        import time

        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            low, high = self.latency
            if high > 0:
                time.sleep(random.uniform(low, high))
        finally:
            with self.lock:
                self.in_flight -= 1

    def next_fault(self) -> str | None:
        """The queued fault, else (with `fault_rate`) a random one of `random_faults`."""
        import random

        fault = None
        with self.lock:
            if self.faults:
                fault = self.faults.popleft()
        if fault is None and self.fault_rate and random.random() < self.fault_rate:
            fault = random.choice(self.random_faults)
        if fault is not None:
            with self.lock:
                self.faults_served[fault] += 1
        return fault


def send_json(
    handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


MAX_BODY = 64 * 1024 * 1024  # the largest upload a stand-in reads (a generated image is < 5 MB)


class BodyRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body; `BodyRejected` (answered 400/413 by the server) for a Content-Length
    that is not a number, is negative, or is larger than MAX_BODY."""
    text = handler.headers.get("Content-Length") or "0"
    if not text.strip().isdigit():
        raise BodyRejected(400, "Content-Length must be a non-negative number")
    length = int(text)
    if length > MAX_BODY:
        raise BodyRejected(413, f"the body is larger than {MAX_BODY} bytes")
    return handler.rfile.read(length) if length else b""


# The providers' documented rate limits: Pinata 180 requests a minute on its API (a burst of 30
# assumed: its documentation names none), Replicate 600 prediction creates and 3,000 other
# requests a minute (short bursts tolerated).
DOCUMENTED_LIMITS = {
    "pinata": {"api": (180.0, 30.0)},
    "replicate": {"create": (600.0, 20.0), "read": (3000.0, 100.0)},
}


S = TypeVar("S", bound=StandInServer)


def documented_limits(standin: S, **overrides: tuple[float, float]) -> S:
    """Ration `standin`'s requests at its provider's documented limits (or `overrides`)."""
    provider = type(standin).__name__.removesuffix("StandIn").lower()
    for kind, (per_minute, burst) in {**DOCUMENTED_LIMITS[provider], **overrides}.items():
        standin.limit(kind, per_minute, burst)
    return standin
