"""A JSON-RPC proxy in front of anvil that can refuse every request for a while (an RPC outage),
and can run a test's hook before it forwards a request (to act at an exact point of a client's
conversation with the node, from another thread)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests

from tests.standins.base import StandInServer, read_body, send_json


class ProxyHandler(BaseHTTPRequestHandler):
    standin: RpcProxy

    def do_POST(self) -> None:
        body = read_body(self)
        if time.monotonic() < self.standin.down_until:
            self.standin.refused += 1
            send_json(
                self, 503, {"jsonrpc": "2.0", "error": {"code": -32000, "message": "service unavailable"}}
            )
            return
        if self.standin.before is not None:
            payload = json.loads(body)
            calls = payload if isinstance(payload, list) else [payload]
            self.standin.before([str(c.get("method")) for c in calls])
        upstream = requests.post(
            self.standin.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)


class RpcProxy(StandInServer):
    handler_class = ProxyHandler

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.down_until = 0.0
        self.refused = 0
        # Called with the JSON-RPC methods of each request, in the handler's thread, before it
        # is forwarded.
        self.before: Callable[[list[str]], Any] | None = None
        super().__init__()

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
