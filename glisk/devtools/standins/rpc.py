"""An RPC front for anvil that rations compute units as Alchemy does.

Each request (one call or a batch) is priced in compute units by Alchemy's table
(`chain.pricing.COMPUTE_UNITS`) and admitted through a token bucket of `cu_per_second` that
holds ten seconds of it (Alchemy counts over a rolling 10 s). A request past it is answered
HTTP 429 with Alchemy's JSON-RPC error body; everything else goes to anvil unchanged.

    python manage.py standin rpc --upstream http://127.0.0.1:8545 --cu-per-second 330
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests

from chain.pricing import compute_units
from glisk.devtools.standins.base import StandInServer, read_body, send_json

THROTTLED_MESSAGE = (
    "Your app has exceeded its compute units per second capacity. If you have retries enabled, "
    "you can safely ignore this message. If not, check out https://docs.alchemy.com/reference/throughput"
)


class RpcHandler(BaseHTTPRequestHandler):
    standin: RpcStandIn

    def do_POST(self) -> None:
        s = self.standin
        body = read_body(self)
        try:
            payload = json.loads(body)
        except ValueError:
            send_json(
                self, 400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
            )
            return
        cost = compute_units(payload)
        calls = payload if isinstance(payload, list) else [payload]
        if s.partial_batches and isinstance(payload, list) and cost and s.throttle("cu", cost) is not None:
            self._partial(payload)
            return
        if cost and s.throttle("cu", cost) is not None:
            first = calls[0] if calls and isinstance(calls[0], dict) else {}
            error = {
                "jsonrpc": "2.0",
                "id": first.get("id"),
                "error": {"code": 429, "message": THROTTLED_MESSAGE},
            }
            send_json(self, 429, error)
            return
        with s.lock:
            s.requests.append({"calls": len(calls), "compute_units": cost})
            s.compute_units += cost
            s.methods.update(str(c.get("method")) for c in calls if isinstance(c, dict))
        upstream = s.session().post(
            s.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=60
        )
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def _partial(self, calls: list[Any]) -> None:
        """A batch past the budget, answered as Alchemy does: HTTP 200, the calls the budget still
        covers (in order) forwarded, a JSON-RPC error 429 for each of the others."""
        s = self.standin
        admitted: list[Any] = []
        for call in calls:
            if s.throttle("cu", compute_units(call)) is not None:
                break
            admitted.append(call)
        refused = calls[len(admitted) :]
        replies: list[Any] = []
        if admitted:
            upstream = s.session().post(s.upstream, json=admitted, timeout=60)
            replies = upstream.json()
        error = (
            {"code": -32005, "message": "request rate exceeded, try again later"}
            if s.refusal_code == -32005
            else {"code": 429, "message": THROTTLED_MESSAGE}
        )
        replies += [
            {"jsonrpc": "2.0", "id": c.get("id"), "error": error} for c in refused if isinstance(c, dict)
        ]
        with s.lock:
            s.requests.append(
                {"calls": len(calls), "compute_units": compute_units(admitted), "refused": len(refused)}
            )
            s.compute_units += compute_units(admitted)
        send_json(self, 200, replies)


class RpcStandIn(StandInServer):
    handler_class = RpcHandler

    def __init__(self, upstream: str, *, cu_per_second: float | None = 330.0, **server: Any) -> None:
        self.upstream = upstream
        self.compute_units = 0
        self.methods: Counter[str] = Counter()
        self._local = threading.local()
        # Alchemy answers a batch past the budget with HTTP 200 and an error 429 for each call it
        # no longer covers; off, the whole batch is refused with HTTP 429.
        self.partial_batches = False
        # The JSON-RPC code of a refused call in such a batch: Alchemy's 429, or the -32005 "limit
        # exceeded" of EIP-1474 that Infura and QuickNode answer.
        self.refusal_code = 429
        super().__init__(**server)
        self.set_rate(cu_per_second)

    def set_rate(self, cu_per_second: float | None) -> None:
        """Compute units a second (None: unlimited), ten seconds of them at once."""
        self.limit("cu", None if cu_per_second is None else cu_per_second * 60, (cu_per_second or 0) * 10)

    def session(self) -> requests.Session:
        """A connection to anvil per handler thread."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    @property
    def throttled_requests(self) -> int:
        return self.throttled_count
