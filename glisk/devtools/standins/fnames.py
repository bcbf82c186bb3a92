"""A Farcaster name registry stand-in: `GET /transfers/current?name=<fname>` answers the name's
latest transfer as fnames.farcaster.xyz does (`{"transfer": {…, "to": <fid>}}`; 404 with
`{"error": …}` for a name never registered; `to` 0 once unregistered).
Faults (one per request): "500", "503", "slow"."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from glisk.devtools.standins.base import StandInServer, read_body, send_json


class FnamesHandler(BaseHTTPRequestHandler):
    standin: FnamesStandIn

    def do_POST(self) -> None:
        """`POST /transfers` `{"name", "to"}`: register a name for a fid. The real registry wants
        the custody address's EIP-712 signature; the stand-in (a development tool) does not."""
        s = self.standin
        s.requests.append({"method": "POST", "path": self.path})
        try:
            body = json.loads(read_body(self) or b"{}")
            name, fid = str(body["name"]).lower(), int(body["to"])
        except (ValueError, KeyError, TypeError):
            send_json(self, 400, {"error": "name and to are required"})
            return
        if urlsplit(self.path).path != "/transfers":
            send_json(self, 404, {"error": "Not found"})
            return
        s.register(name, fid)
        send_json(self, 200, {"transfer": s.current[name]})

    def do_GET(self) -> None:
        s = self.standin
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        s.requests.append({"method": "GET", "path": url.path, "query": query})
        fault = s.next_fault()
        if fault == "slow":
            time.sleep(s.slow_seconds)
        if fault in ("500", "503"):
            send_json(self, int(fault), {"error": "Internal server error"})
            return
        if url.path != "/transfers/current":
            send_json(self, 404, {"error": "Not found"})
            return
        with s.lock:
            transfer = s.current.get(query.get("name", "").lower())
        if transfer is None:
            send_json(self, 404, {"error": "No transfer found"})
            return
        send_json(self, 200, {"transfer": transfer})


class FnamesStandIn(StandInServer):
    handler_class = FnamesHandler

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, public_url: str = "") -> None:
        self.current: dict[str, dict[str, Any]] = {}
        self.slow_seconds = 3.0
        self._next_id = 1
        super().__init__(host=host, port=port, public_url=public_url)

    def register(
        self, name: str, fid: int, owner: str = "0x0000000000000000000000000000000000000000"
    ) -> None:
        """Record a transfer of `name` to `fid` (0 unregisters it), as the registry's log would."""
        with self.lock:
            previous = self.current.get(name)
            self.current[name] = {
                "id": self._next_id,
                "timestamp": int(time.time()),
                "username": name,
                "owner": owner,
                "from": previous["to"] if previous else 0,
                "to": fid,
                "user_signature": "0x" + "11" * 65,
                "server_signature": "0x" + "22" * 65,
            }
            self._next_id += 1


def sign_in_message(
    *,
    domain: str,
    address: str,
    fid: int,
    issued: datetime,
    expires: datetime | None,
    nonce: str,
    chain_id: int = 10,
) -> str:
    """A Sign In With Farcaster message (EIP-4361 text) as the Farcaster sign-in writes it, for the
    demo and the tests to sign: statement "Farcaster Auth", chain 10, the fid as its resource."""

    def stamp(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    lines = [
        f"{domain} wants you to sign in with your Ethereum account:",
        address,
        "",
        "Farcaster Auth",
        "",
        f"URI: https://{domain}/login",
        "Version: 1",
        f"Chain ID: {chain_id}",
        f"Nonce: {nonce}",
        f"Issued At: {stamp(issued)}",
    ]
    if expires is not None:
        lines.append(f"Expiration Time: {stamp(expires)}")
    return "\n".join([*lines, "Resources:", f"- farcaster://fid/{fid}"])
