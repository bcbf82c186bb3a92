"""IPFS: kubo-compatible CIDs computed locally, and the pinners (Pinata, a local store).

Every upload's CID is computed here first; a provider that answers with another CID fails the
attempt loudly, because the metadata and the chain would otherwise point at something else.

Images are pinned as CIDv1 (raw leaves, `bafkrei…`); metadata as CIDv0 (`Qm…`, what `ipfs add`
gives by default), because the contract stores each `tokenURI` and `ipfs://` + a CIDv0 is 53
bytes, one storage slot fewer than the 66 of a base32 CIDv1 (about 22,000 gas per token).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
from aleph_cid import CidHasher

from glisk.core.budgets import PINATA, budget_available, budget_wait
from lifecycle.providers.errors import (
    ProviderError,
    admitted,
    http_error,
    throttled_by_provider,
    timeout_error,
    unreachable_error,
)
from lifecycle.providers.unixfs import directory, file_dag

# CIDv0, or a base32 CIDv1 (59 characters for SHA-256; bounded, so that a path built from one
# is never too long for the file system).
_CID = re.compile(r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,100})$")


IMAGE_CID_VERSION = 1
METADATA_CID_VERSION = 0


def cid_v1(data: bytes) -> str:
    """What `ipfs add --cid-version=1` (and Pinata's `cidVersion: 1`) gives for one file:
    raw leaves, 256 KiB chunks, a balanced dag-pb tree above one chunk."""
    hasher = CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    return hasher.finalize()


def cid_v0(data: bytes) -> str:
    """What plain `ipfs add` (and Pinata without `cidVersion`) gives for one file: UnixFS
    dag-pb leaves, 256 KiB chunks, sha2-256, base58btc."""
    hasher = CidHasher.for_ipfs()
    hasher.update(data)
    return hasher.finalize()


def cid_of(data: bytes, version: int) -> str:
    if version == 0:
        return cid_v0(data)
    if version == 1:
        return cid_v1(data)
    raise ValueError(f"unknown CID version {version!r}")


def cid_version(cid: str) -> int:
    """0 for a `Qm…` CIDv0, 1 for anything else we produce (multibase base32 `b…`)."""
    return 0 if cid.startswith("Qm") else 1


def cid_matches(data: bytes, cid: str) -> bool:
    """Whether the bytes hash to `cid`, in the version `cid` is written in (tokens pinned before
    metadata moved to CIDv0 keep their CIDv1 URIs)."""
    return is_cid(cid) and cid_of(data, cid_version(cid)) == cid


def is_cid(text: str) -> bool:
    return bool(_CID.match(text))


@dataclass(frozen=True)
class Pinned:
    cid: str
    size: int


@dataclass(frozen=True)
class File:
    """One file of a directory upload."""

    name: str
    data: bytes
    content_type: str


def directory_cids(files: list[File], *, cid_version: int) -> tuple[str, dict[str, str]]:
    """The CID kubo gives a directory of `files`, and each file's own CID (the same as alone)."""
    nodes = {f.name: file_dag(f.data, version=cid_version) for f in files}
    if len(nodes) != len(files):
        raise ValueError("a directory cannot hold two files of one name")
    return directory(nodes, version=cid_version).text, {name: node.text for name, node in nodes.items()}


class Pinner(Protocol):
    name: str

    def pin(
        self, *, data: bytes, filename: str, content_type: str, keyvalues: dict[str, str], cid_version: int
    ) -> Pinned: ...

    def pin_directory(
        self, *, folder: str, files: list[File], keyvalues: dict[str, str], cid_version: int
    ) -> dict[str, Pinned]:
        """Pin `files` as one directory named `folder`, in one request where the provider takes
        one; returns each file's pin by name, every CID checked against the bytes."""
        ...


class CidMismatch(ProviderError):
    def __init__(self, expected: str, got: str):
        super().__init__(
            f"provider returned CID {got[:80]} but the content hashes to {expected}",
            transient=False,
            error_class="cid_mismatch",
        )


class LocalPinner:
    """A content-addressed store under var/ipfs, served by the app at /ipfs/<cid>."""

    name = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, cid: str) -> Path:
        return self.root / cid[-2:] / cid

    def pin(
        self, *, data: bytes, filename: str, content_type: str, keyvalues: dict[str, str], cid_version: int
    ) -> Pinned:
        cid = cid_of(data, cid_version)
        target = self.path_for(cid)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: a reader never sees half a file, two writers never clash.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(target)
            target.with_suffix(".type").write_text(content_type)
        return Pinned(cid=cid, size=len(data))

    def pin_directory(
        self, *, folder: str, files: list[File], keyvalues: dict[str, str], cid_version: int
    ) -> dict[str, Pinned]:
        return {
            f.name: self.pin(
                data=f.data,
                filename=f.name,
                content_type=f.content_type,
                keyvalues=keyvalues,
                cid_version=cid_version,
            )
            for f in files
        }

    def read(self, cid: str) -> tuple[bytes, str] | None:
        if not is_cid(cid):
            return None
        path = self.path_for(cid)
        if not path.exists():
            return None
        type_file = path.with_suffix(".type")
        content_type = type_file.read_text() if type_file.exists() else "application/octet-stream"
        return path.read_bytes(), content_type


class PinataPinner:
    """`pinFileToIPFS` with the CID version asked for (`pinataOptions.cidVersion`) and a Bearer JWT.

    Every request is admitted through the account's shared budget first. A batch's files go up
    in one request, as a directory (`pin_directory`): Pinata answers the directory's CID, which
    names every file's CID, so checking it against ours checks them all."""

    name = "pinata"
    network_bound = True  # a stage works on a claimed batch concurrently

    def __init__(self, *, jwt: str, api_url: str, timeout: float):
        if not jwt:
            raise ProviderError("PINATA_JWT is not set", transient=False, error_class="configuration")
        self._jwt = jwt  # never logged
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    @classmethod
    def from_settings(cls) -> PinataPinner:
        from django.conf import settings

        c = settings.GLISK
        return cls(jwt=c.pinata_jwt, api_url=c.pinata_api_url, timeout=c.pinata_timeout_seconds)

    def pin(
        self, *, data: bytes, filename: str, content_type: str, keyvalues: dict[str, str], cid_version: int
    ) -> Pinned:
        return self._upload(
            [("file", (filename, data, content_type))],
            name=filename,
            keyvalues=keyvalues,
            cid_version=cid_version,
        )

    def pin_directory(
        self, *, folder: str, files: list[File], keyvalues: dict[str, str], cid_version: int
    ) -> dict[str, Pinned]:
        root, cids = directory_cids(files, cid_version=cid_version)
        pinned = self._upload(
            [("file", (f"{folder}/{f.name}", f.data, f.content_type)) for f in files],
            name=folder,
            keyvalues=keyvalues,
            cid_version=cid_version,
        )
        if pinned.cid != root:
            raise CidMismatch(root, pinned.cid)
        return {f.name: Pinned(cid=cids[f.name], size=len(f.data)) for f in files}

    def _upload(
        self,
        parts: list[tuple[str, tuple[str, bytes, str]]],
        *,
        name: str,
        keyvalues: dict[str, str],
        cid_version: int,
    ) -> Pinned:
        form = {
            "pinataMetadata": json.dumps({"name": name, "keyvalues": keyvalues}),
            "pinataOptions": json.dumps({"cidVersion": cid_version}),
        }
        admitted(PINATA)
        try:
            response = self._session.post(
                f"{self.api_url}/pinning/pinFileToIPFS",
                files=parts,
                data=form,
                headers={"Authorization": f"Bearer {self._jwt}"},
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise timeout_error("Pinata", self.timeout) from None
        except requests.RequestException as exc:
            raise unreachable_error("Pinata", exc) from None
        if response.status_code == 429:
            raise throttled_by_provider(
                PINATA, f"Pinata answered 429: {_reason(response)}", response.headers, _json(response)
            )
        if response.status_code != 200:
            raise http_error(
                response.status_code, f"Pinata answered {response.status_code}: {_reason(response)}"
            )
        try:
            body: dict[str, Any] = response.json()
            cid = str(body["IpfsHash"])
        except (ValueError, KeyError, TypeError):
            raise ProviderError(
                "Pinata answered 200 without an IpfsHash", transient=True, error_class="bad_response"
            ) from None
        try:
            size = int(body.get("PinSize") or 0)
        except (TypeError, ValueError):
            size = 0
        return Pinned(cid=cid, size=size or sum(len(part[1][1]) for part in parts))

    def claimable(self, tokens: int) -> int:
        """A batch goes up in two requests (its images, then its metadata): claim it only when
        the account's budget holds at least one now."""
        return tokens if budget_available(name=PINATA) >= 1 else 0

    def budget_wait(self) -> float:
        return budget_wait(name=PINATA)


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _reason(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:200]
    if isinstance(error, dict):
        return f"{error.get('reason', '')} {error.get('details', '')}".strip()[:200]
    return str(error)[:200]


def pin_verified(
    pinner: Pinner,
    *,
    data: bytes,
    filename: str,
    content_type: str,
    keyvalues: dict[str, str],
    cid_version: int,
) -> Pinned:
    """Pin, and fail loudly unless the provider's CID is the one the bytes hash to."""
    expected = cid_of(data, cid_version)
    pinned = pinner.pin(
        data=data, filename=filename, content_type=content_type, keyvalues=keyvalues, cid_version=cid_version
    )
    if pinned.cid != expected:
        raise CidMismatch(expected, pinned.cid)
    return pinned


def pinner() -> Pinner:
    from django.conf import settings

    if settings.GLISK.ipfs_provider == "pinata":
        return PinataPinner.from_settings()
    return LocalPinner(settings.IPFS_LOCAL_DIR)
