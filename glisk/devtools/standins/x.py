"""An X (Twitter) OAuth 2.0 stand-in: the authorization page, the token endpoint and `users/me`,
with X's wire formats and checks (a confidential client's HTTP Basic credentials, the exact
redirect URI, PKCE S256, one-time codes).

`GET /i/oauth2/authorize` stands for the user's consent: it redirects (302) straight back to
`redirect_uri` with `code` and `state`, or with `error=access_denied` while `deny` is set.
Faults (one per request to the API, see StandInServer.inject): "500", "503", "slow".
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from glisk.devtools.standins.base import StandInServer, read_body, send_json


class XHandler(BaseHTTPRequestHandler):
    standin: XStandIn

    def do_GET(self) -> None:
        s = self.standin
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        s.requests.append({"method": "GET", "path": url.path, "query": query})
        if url.path == "/i/oauth2/authorize":
            self._authorize(query)
        elif url.path == "/2/users/me":
            if self._fault():
                return
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            user = s.tokens.get(token)
            if user is None:
                send_json(
                    self,
                    401,
                    {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
                )
                return
            send_json(
                self, 200, {"data": {"id": user["id"], "name": user["name"], "username": user["username"]}}
            )
        else:
            send_json(self, 404, {"title": "Not Found Error", "status": 404, "detail": "Not found"})

    def _authorize(self, query: dict[str, str]) -> None:
        s = self.standin
        problems = [
            name
            for name, ok in (
                ("response_type", query.get("response_type") == "code"),
                ("client_id", query.get("client_id") == s.client_id),
                ("redirect_uri", bool(query.get("redirect_uri"))),
                ("code_challenge", bool(query.get("code_challenge"))),
                ("code_challenge_method", query.get("code_challenge_method") == "S256"),
                ("scope", "users.read" in query.get("scope", "").split()),
            )
            if not ok
        ]
        if problems:
            # X shows an error page rather than redirecting to an unverified client.
            send_json(self, 400, {"error": "invalid_request", "error_description": ", ".join(problems)})
            return
        back: dict[str, str] = {"state": query.get("state", "")}
        if s.deny:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with s.lock:
                s.codes[code] = {
                    "challenge": query["code_challenge"],
                    "redirect_uri": query["redirect_uri"],
                    "user": dict(s.user),
                    "expires": time.monotonic() + 30,
                }
            back["code"] = code
        self.send_response(302)
        self.send_header("Location", f"{query['redirect_uri']}?{urlencode(back)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        s = self.standin
        url = urlsplit(self.path)
        body = read_body(self)
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        s.requests.append(
            {"method": "POST", "path": url.path, "form": form, "auth": self.headers.get("Authorization")}
        )
        if url.path != "/2/oauth2/token":
            send_json(self, 404, {"title": "Not Found Error", "status": 404, "detail": "Not found"})
            return
        if self._fault():
            return
        expected = base64.b64encode(f"{s.client_id}:{s.client_secret}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            send_json(
                self,
                401,
                {"error": "unauthorized_client", "error_description": "Missing valid authorization header"},
            )
            return
        with s.lock:
            grant = s.codes.pop(form.get("code", ""), None)  # a code works once
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or grant["expires"] < time.monotonic()
            or grant["redirect_uri"] != form.get("redirect_uri")
            or grant["challenge"] != challenge
        ):
            send_json(
                self,
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Value passed for the authorization code was invalid.",
                },
            )
            return
        token = secrets.token_urlsafe(32)
        with s.lock:
            s.tokens[token] = grant["user"]
        send_json(
            self,
            200,
            {
                "token_type": "bearer",
                "expires_in": 7200,
                "access_token": token,
                "scope": "users.read tweet.read",
            },
        )

    def _fault(self) -> bool:
        fault = self.standin.next_fault()
        if fault == "slow":
            time.sleep(self.standin.slow_seconds)
        if fault in ("500", "503"):
            send_json(
                self,
                int(fault),
                {"title": "Service Unavailable", "status": int(fault), "detail": "Over capacity"},
            )
            return True
        return False


class XStandIn(StandInServer):
    handler_class = XHandler

    def __init__(
        self,
        *,
        client_id: str = "glisk-devnet-client",
        client_secret: str = "glisk-devnet-secret-not-for-production",
        username: str = "glisk_artist",
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str = "",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.user: dict[str, Any] = {
            "id": "1500000000000000001",
            "name": "GLISK artist",
            "username": username,
        }
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.deny = False
        self.slow_seconds = 3.0
        super().__init__(host=host, port=port, public_url=public_url)

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/i/oauth2/authorize"
