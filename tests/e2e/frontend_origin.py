"""The web frontend's origin, as its development server is one: our test page (tests/e2e/browser)
at `/` and `/profile`, and `/api/*` passed on to the backend unchanged (its Next.js rewrite), so
cookies the API sets belong to this origin, not the API's."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

PAGE_DIR = Path(__file__).resolve().parent / "browser"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class FrontendOrigin:
    """Serves on 127.0.0.1:`port`; browsers reach it as http://localhost:`port` (a secure
    context, as the frontend's own development server is)."""

    def __init__(self, *, port: int, backend_url: str, config: dict[str, Any]) -> None:
        self.backend_url = backend_url.rstrip("/")
        self.config = config
        self.api_calls: list[tuple[str, str, int]] = []  # (method, path, the backend's status)
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path.startswith("/api/"):
                    return origin._forward(self)
                pages = {
                    "/": ("page.html", "text/html"),
                    "/profile": ("page.html", "text/html"),
                    "/page.js": ("page.js", "text/javascript"),
                }
                if path == "/config.json":
                    return origin._send(self, 200, json.dumps(origin.config).encode(), "application/json")
                if path in pages:
                    name, kind = pages[path]
                    return origin._send(self, 200, (PAGE_DIR / name).read_bytes(), f"{kind}; charset=utf-8")
                return origin._send(self, 404, b"not found", "text/plain")

            def do_POST(self) -> None:
                origin._forward(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://localhost:{port}"

    def start(self) -> FrontendOrigin:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        answer = requests.request(
            handler.command,
            self.backend_url + handler.path,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=30,
        )
        self.api_calls.append((handler.command, handler.path.split("?")[0], answer.status_code))
        handler.send_response(answer.status_code)
        for name, value in answer.raw.headers.items():
            if name.lower() not in HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)
