"""A Pinata API stand-in: `pinFileToIPFS` with multipart parsing and CIDs computed like Pinata's.

Several `file` parts whose filenames share one folder (`batch/1.png`, `batch/2.png`) are pinned
as that folder, a UnixFS directory built as kubo builds it, and answered with its CID; each file
keeps the CID it has alone. With a rate limit (`limit("api", 180, 30)`, Pinata's documented
180 requests a minute) a request past it gets Pinata's 429, with its `x-ratelimit-*` headers.

Faults (one per upload): "429", "500", "503", "slow", "401", "403", "400", "wrong_cid".
`GET /ipfs/<cid>` serves what was pinned, as Pinata's gateway does (no faults, no limit there).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from glisk.devtools.standins.base import StandInServer, read_body, send_json

CHUNK = 262_144


def reference_cid_v1(data: bytes) -> str:
    """CIDv1 as kubo/Pinata compute it. Single-chunk files are computed here from first
    principles (raw codec, sha2-256 multihash, base32); larger ones need the DAG builder."""
    if len(data) <= CHUNK:
        digest = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
        return "b" + base64.b32encode(digest).decode().lower().rstrip("=")
    from aleph_cid import CidHasher

    hasher = CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    return hasher.finalize()


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def reference_cid_v0(data: bytes) -> str:
    """CIDv0 as `ipfs add` and Pinata (without `cidVersion`) compute it. A single-chunk file is
    one dag-pb node (PBNode.Data = UnixFS {Type: File, Data, filesize}), hashed with sha2-256 and
    written in base58btc: built here from the specs; larger ones need the DAG builder."""
    if len(data) > CHUNK:
        from aleph_cid import CidHasher

        hasher = CidHasher.for_ipfs()
        hasher.update(data)
        return hasher.finalize()
    unixfs = b"\x08\x02" + (_field(2, data) if data else b"") + b"\x18" + _varint(len(data))
    node = _field(1, unixfs)
    multihash = bytes([0x12, 0x20]) + hashlib.sha256(node).digest()
    number = int.from_bytes(multihash, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return text  # a multihash never starts with a zero byte, so no leading "1"s


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """Every part of a multipart body as (field name, filename, bytes), in order."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts: list[tuple[str, str | None, bytes]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append((str(name), part.get_filename(), payload if isinstance(payload, bytes) else b""))
    return parts


def reference_directory_cid(files: dict[str, bytes], version: int) -> str:
    """The CID kubo gives a folder of `files` (`ipfs add -r`), by the kubo-compatible library
    (written to a scratch folder: the library hashes folders on disk)."""
    from aleph_cid import hash_folder

    with tempfile.TemporaryDirectory() as scratch:
        for name, data in files.items():
            (Path(scratch) / name).write_bytes(data)
        return hash_folder(scratch, cid_version=version)


RATE_LIMIT_REASON = {"error": {"reason": "RATE_LIMITED", "details": "Too many requests"}}


class PinataHandler(BaseHTTPRequestHandler):
    standin: PinataStandIn

    def do_POST(self) -> None:
        s = self.standin
        if self.headers.get("Authorization") != f"Bearer {s.jwt}":
            # Refused before the body is read, as an API gateway does: nobody unauthenticated
            # makes the stand-in read (and hold) a large upload.
            s.requests.append({"path": self.path, "headers": dict(self.headers), "size": None})
            self.close_connection = True
            send_json(self, 401, {"error": {"reason": "INVALID_CREDENTIALS", "details": "Invalid API key"}})
            return
        body = read_body(self)
        s.requests.append({"path": self.path, "headers": dict(self.headers), "size": len(body)})
        if self.path != "/pinning/pinFileToIPFS":
            send_json(self, 404, {"error": "Not found"})
            return
        throttled = s.throttle("api")
        if throttled is not None:
            limit = s.limits["api"]
            send_json(
                self,
                429,
                RATE_LIMIT_REASON,
                {
                    "x-ratelimit-limit": str(round(limit.rate * 60)),
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(math.ceil(throttled)),
                },
            )
            return
        fault = s.next_fault()
        s.delay()
        if fault == "slow":
            time.sleep(s.slow_seconds)
        if fault in ("401", "403") or self.headers.get("Authorization") != f"Bearer {s.jwt}":
            status = 403 if fault == "403" else 401
            send_json(
                self, status, {"error": {"reason": "INVALID_CREDENTIALS", "details": "Invalid API key"}}
            )
            return
        if fault == "429":
            send_json(
                self,
                429,
                {"error": {"reason": "RATE_LIMITED", "details": "Too many requests"}},
                {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"},
            )
            return
        if fault in ("500", "503"):
            send_json(self, int(fault), {"error": {"reason": "INTERNAL", "details": "try again"}})
            return
        parts = parse_multipart(self.headers.get("Content-Type", ""), body)
        files = [(filename or "", data) for name, filename, data in parts if name == "file"]
        fields = {name: data for name, _, data in parts if name != "file"}
        if not files or fault == "400":
            send_json(self, 400, {"error": {"reason": "INVALID_REQUEST", "details": "file is required"}})
            return
        try:
            options = json.loads(fields.get("pinataOptions") or b"{}")
            metadata = json.loads(fields.get("pinataMetadata") or b"{}")
            assert isinstance(options, dict)
            assert isinstance(metadata, dict)
        except (ValueError, AssertionError):
            send_json(
                self, 400, {"error": {"reason": "INVALID_REQUEST", "details": "pinataOptions must be JSON"}}
            )
            return
        version = options.get("cidVersion", 0)  # Pinata answers CIDv0 unless asked for v1
        if version not in (0, 1):
            send_json(
                self, 400, {"error": {"reason": "INVALID_REQUEST", "details": "cidVersion must be 0 or 1"}}
            )
            return
        reference = reference_cid_v0 if version == 0 else reference_cid_v1
        pins = {reference(data): (filename, data) for filename, data in files}
        if len(files) == 1 and "/" not in files[0][0]:
            filename, data = files[0]
            cid = reference(data)
        else:
            folders = {filename.split("/", 1)[0] for filename, _ in files}
            names = [filename.split("/", 1)[-1] for filename, _ in files]
            if len(folders) != 1 or any(not n or "/" in n for n in names) or len(set(names)) != len(names):
                send_json(
                    self,
                    400,
                    {"error": {"reason": "INVALID_REQUEST", "details": "files must share one folder"}},
                )
                return
            cid = reference_directory_cid(dict(zip(names, (d for _, d in files), strict=True)), version)
            filename, data = folders.pop(), b""
        if fault == "wrong_cid":
            cid = reference(data + b"tampered")
        with s.lock:
            duplicate = cid in s.pins
            for file_cid, (name, content) in pins.items():
                s.pins[file_cid] = {
                    "data": content,
                    "filename": name,
                    "metadata": metadata,
                    "options": options,
                }
            if cid not in pins:
                s.pins[cid] = {
                    "data": b"",
                    "filename": filename,
                    "metadata": metadata,
                    "options": options,
                    "directory": sorted(pins),
                }
            s.uploads.append(cid)
        answer: dict[str, Any] = {
            "IpfsHash": cid,
            "PinSize": sum(len(d) for _, d in files),
            "Timestamp": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
        }
        if duplicate:
            answer["isDuplicate"] = True
        send_json(self, 200, answer)

    def do_GET(self) -> None:
        cid = self.path.removeprefix("/ipfs/").split("?")[0]
        with self.standin.lock:
            pin = self.standin.pins.get(cid) if self.path.startswith("/ipfs/") else None
        if pin is None:
            send_json(self, 404, {"error": "not pinned here"})
            return
        data: bytes = pin["data"]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class PinataStandIn(StandInServer):
    handler_class = PinataHandler

    def __init__(
        self, jwt: str = "eyJhbGciOiJIUzI1NiJ9.eyJzdGFuZGluIjp0cnVlfQ.c3RhbmRpbg", **server: Any
    ) -> None:
        self.jwt = jwt
        self.pins: dict[str, dict[str, Any]] = {}
        self.uploads: list[str] = []
        self.slow_seconds = 3.0
        self.lock = threading.Lock()
        super().__init__(**server)
