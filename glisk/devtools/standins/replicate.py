"""A Replicate API stand-in: predictions (with `Prefer: wait`), polling, problem JSON, file URLs.

`GET /v1/predictions` lists them newest first, `page_size` a page, with a `next` cursor URL.
Like the real API, a prediction runs after its create answered: it finishes `run_seconds` later
(drawn per prediction; 0 by default), `GET /v1/predictions/{id}` shows `processing` until then,
and `Prefer: wait=N` holds the create answer up to N seconds for it. `latency` delays every
answer (the network).

With rate limits (`limit("create", 600, 10)` and `limit("read", 3000, 50)`, Replicate's
documented ones), a request past its limit gets Replicate's 429: `{"detail": "Request was
throttled. Your rate limit resets in ~Ns."}` with `ratelimit-remaining` and `ratelimit-reset`
headers (and `Retry-After` on every other one, as some of Replicate's answers carry it).

Faults (one per prediction create): "429", "429_retry_after" (3 s; "_inf" and "_huge" ask for
"inf" and "1e9"), "500", "503", "slow" (sleeps past the client's timeout), "nsfw",
"model_error", "401", "422", "starting" (answers `starting` and finishes after two polls),
"garbage_poll" (the prediction is created and paid for, and the first poll answers 200 with a
body that is not JSON: the client library raises its own exception). Prompts listed in
`nsfw_prompts` always fail as NSFW.
"""

from __future__ import annotations

import io
import math
import random
import re
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from glisk.devtools.standins.base import StandInServer, read_body, send_json

NSFW_ERROR = "All generated images contained NSFW content. Try running it again with a different prompt."


def webp_bytes(seed: str) -> bytes:
    from PIL import Image

    color = tuple(secrets.token_bytes(3)) if not seed else tuple(seed.encode()[:3].ljust(3, b"x"))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="WEBP")
    return buffer.getvalue()


def now() -> str:
    return datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")


class ReplicateHandler(BaseHTTPRequestHandler):
    standin: ReplicateStandIn

    def _throttled(self, kind: str) -> bool:
        """Answer 429 if `kind` ("create" or "read") is past its rate limit."""
        s = self.standin
        wait = s.throttle(kind)
        if wait is None:
            return False
        seconds = max(1, math.ceil(wait))
        headers = {"ratelimit-remaining": "0", "ratelimit-reset": str(seconds)}
        if s.limits[kind].refused % 2:
            headers["Retry-After"] = str(seconds)
        detail = f"Request was throttled. Your rate limit resets in ~{seconds}s."
        send_json(self, 429, {"detail": detail, "status": 429}, headers)
        return True

    def _authorized_quietly(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.standin.token}"

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.standin.token}":
            send_json(
                self,
                401,
                {
                    "title": "Unauthenticated",
                    "detail": "You did not pass a valid authentication token",
                    "status": 401,
                },
            )
            return False
        return True

    def do_POST(self) -> None:
        s = self.standin
        match = re.fullmatch(r"/v1/models/([^/]+)/([^/]+)/predictions", self.path)
        body = read_body(self)
        s.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
        if not match:
            send_json(self, 404, {"detail": "Not found", "status": 404})
            return
        if self._authorized_quietly() and self._throttled("create"):
            return
        fault = s.next_fault()
        s.delay()
        if fault == "slow":
            time.sleep(s.slow_seconds)
        if fault == "401" or not self._authorized():
            if fault == "401":
                send_json(self, 401, {"title": "Unauthenticated", "detail": "Invalid token", "status": 401})
            return
        if fault is not None and fault.startswith("429"):
            retry_after = {
                "429_retry_after": "3",
                "429_retry_after_inf": "inf",
                "429_retry_after_huge": "1e9",
            }
            headers = {"Retry-After": retry_after[fault]} if fault in retry_after else {}
            send_json(
                self,
                429,
                {"detail": "Request was throttled. Expected available in 1 second.", "status": 429},
                headers,
            )
            return
        if fault in ("500", "503"):
            send_json(self, int(fault), {"detail": "Internal server error", "status": int(fault)})
            return
        import json

        try:
            payload = json.loads(body)
            prompt = payload["input"]["prompt"]
            assert isinstance(prompt, str)
            assert prompt
        except (ValueError, KeyError, TypeError, AssertionError):
            send_json(
                self,
                422,
                {"title": "Input validation failed", "detail": "input.prompt is required", "status": 422},
            )
            return
        if fault == "422":
            send_json(
                self,
                422,
                {"title": "Input validation failed", "detail": "- input.num_outputs: too big", "status": 422},
            )
            return
        prediction_id = secrets.token_hex(10)
        model = f"{match.group(1)}/{match.group(2)}"
        prediction: dict[str, Any] = {
            "id": prediction_id,
            "model": model,
            "version": "hidden",
            "input": payload["input"],
            "output": None,
            "logs": "",
            "error": None,
            "status": "starting",
            "created_at": now(),
            "started_at": None,
            "completed_at": None,
            "metrics": {},
            "data_removed": False,
            "urls": {
                "get": f"{s.url}/v1/predictions/{prediction_id}",
                "cancel": f"{s.url}/v1/predictions/{prediction_id}/cancel",
                "web": f"https://replicate.com/p/{prediction_id}",
            },
        }
        nsfw = fault == "nsfw" or prompt in s.nsfw_prompts
        run = random.uniform(*s.run_seconds) if s.run_seconds[1] > 0 else 0.0
        if fault == "starting":
            prediction["_polls_left"] = 2
        elif fault == "garbage_poll":
            prediction.update(_polls_left=2, _garbage=True)
        elif run > 0:
            prediction.update(
                _ready_at=time.monotonic() + run, _nsfw=nsfw, _model_error=fault == "model_error"
            )
        else:
            self._finish(prediction, nsfw=nsfw, model_error=fault == "model_error")
        with s.lock:
            s.predictions[prediction_id] = prediction
            s.prompts.append(prompt)
        wait = re.fullmatch(r"wait(?:=(\d+))?", (self.headers.get("Prefer") or "").strip())
        if wait and "_ready_at" in prediction:
            time.sleep(max(0.0, min(float(wait.group(1) or 60), prediction["_ready_at"] - time.monotonic())))
            with s.lock:
                self._settle(prediction)
        send_json(self, 201, {k: v for k, v in prediction.items() if not k.startswith("_")})

    def _list(self, offset: int) -> None:
        """`GET /v1/predictions`: the account's predictions, newest first, a page at a time."""
        s = self.standin
        with s.lock:
            ordered = list(reversed(s.predictions.values()))
            page = ordered[offset : offset + s.page_size]
            for prediction in page:
                self._settle(prediction)
            results = [{k: v for k, v in p.items() if not k.startswith("_")} for p in page]
        more = offset + s.page_size < len(ordered)
        send_json(
            self,
            200,
            {
                "previous": None,
                "next": f"{s.url}/v1/predictions?cursor={offset + s.page_size}" if more else None,
                "results": results,
            },
        )

    def _settle(self, prediction: dict[str, Any]) -> None:
        """A running prediction whose time has come is finished; call with the lock held."""
        ready_at = prediction.get("_ready_at")
        if ready_at is None:
            return
        if time.monotonic() < ready_at:
            prediction["status"] = "processing"
            prediction["started_at"] = prediction["started_at"] or now()
            return
        del prediction["_ready_at"]
        self._finish(
            prediction, nsfw=prediction.pop("_nsfw", False), model_error=prediction.pop("_model_error", False)
        )

    def _finish(self, prediction: dict[str, Any], *, nsfw: bool = False, model_error: bool = False) -> None:
        prediction["started_at"] = prediction["completed_at"] = now()
        prediction["metrics"] = {"predict_time": 0.01}
        if nsfw:
            prediction.update(status="failed", error=NSFW_ERROR)
        elif model_error:
            prediction.update(status="failed", error="CUDA out of memory")
        else:
            self.standin.files[prediction["id"]] = webp_bytes(prediction["input"]["prompt"])
            prediction.update(
                status="succeeded", output=[f"{self.standin.url}/files/{prediction['id']}/out-0.webp"]
            )

    def do_GET(self) -> None:
        s = self.standin
        s.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        file_match = re.fullmatch(r"/files/([0-9a-f]+)/out-0\.webp", self.path)
        if file_match:
            data = s.files.get(file_match.group(1))
            with s.lock:
                file_fault = s.file_faults.popleft() if s.file_faults else None
            if file_fault is not None:  # the CDN refusing for a while: "429" or a 5xx status
                self.send_response(int(file_fault))
                if file_fault == "429":
                    self.send_header("Retry-After", "2")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if data is None or s.files_gone:
                self.send_response(404)
                self.end_headers()
                return
            content_type = "image/webp"
            if s.files_garbled:  # a CDN answering 200 with a page of its own, typed as anything
                data, content_type = b"<html>upstream busy</html>", "image/" + "x" * 70
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.path.startswith("/v1/") and self._authorized_quietly() and self._throttled("read"):
            return
        listing = re.fullmatch(r"/v1/predictions(?:\?cursor=(\d+))?", self.path)
        if listing:
            if self._authorized():
                fault = s.list_faults.pop(0) if s.list_faults else None
                if fault == "429":
                    send_json(
                        self, 429, {"detail": "Request was throttled.", "status": 429}, {"Retry-After": "1"}
                    )
                elif fault == "500":
                    send_json(self, 500, {"detail": "Internal server error", "status": 500})
                elif fault == "garbage":
                    send_json(self, 200, {"next": None, "oops": []})  # no `results`
                else:
                    self._list(int(listing.group(1) or 0))
            return
        match = re.fullmatch(r"/v1/predictions/([0-9a-f]+)", self.path)
        if not match or not self._authorized():
            if not match:
                send_json(self, 404, {"detail": "Not found", "status": 404})
            return
        with s.lock:
            prediction = s.predictions.get(match.group(1))
            if prediction is None:
                send_json(self, 404, {"detail": "Not found", "status": 404})
                return
            self._settle(prediction)
            if prediction.pop("_garbage", False):
                body = b'{"id": "' + prediction["id"].encode() + b'", "status": "proc'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if prediction.get("_polls_left"):
                prediction["_polls_left"] -= 1
                prediction["status"] = "processing"
                if not prediction["_polls_left"]:
                    self._finish(prediction)
        send_json(self, 200, {k: v for k, v in prediction.items() if not k.startswith("_")})


class ReplicateStandIn(StandInServer):
    handler_class = ReplicateHandler

    def __init__(self, token: str = "r8_standin_token_0123456789", **server: Any) -> None:
        self.token = token
        self.predictions: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.prompts: list[str] = []
        self.nsfw_prompts: set[str] = set()
        self.slow_seconds = 3.0
        self.run_seconds: tuple[float, float] = (0.0, 0.0)  # how long each prediction runs
        self.page_size = 100  # predictions per page of GET /v1/predictions
        self.list_faults: list[str] = []  # one per GET /v1/predictions: "429", "500", "garbage"
        self.files_gone = False
        self.file_faults: deque[str] = deque()  # statuses for the next output downloads, in order
        self.files_garbled = False  # outputs answered with an HTML page under an odd Content-Type
        self.lock = threading.Lock()
        super().__init__(**server)

    @property
    def creates(self) -> int:
        return sum(1 for r in self.requests if r["method"] == "POST")
