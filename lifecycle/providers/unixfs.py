"""UnixFS DAGs as kubo builds them, for the CIDs of a directory upload.

A directory's CID covers each entry's CID, name and *cumulative size* (every block of the
entry's DAG), so the DAG of each file is built here, the way `ipfs add` builds it: 256 KiB
chunks, a balanced tree of at most 174 links a node, leaves that are raw blocks (CIDv1, what
`--cid-version=1` gives) or UnixFS dag-pb nodes (CIDv0). A directory node is dag-pb with one
link per entry, sorted by name, and UnixFS `Directory` data. dag-pb writes its links (field 2)
before its data (field 1).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

CHUNK = 262_144
MAX_LINKS = 174
RAW, DAG_PB = 0x55, 0x70
SHA2_256 = bytes([0x12, 0x20])
_FILE, _DIRECTORY = 2, 1
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


@dataclass(frozen=True)
class Node:
    """A block of a DAG: its CID (binary), and the bytes of it and everything below it."""

    cid: bytes
    cumulative_size: int
    file_size: int = 0  # bytes of file data below it (UnixFS blocksizes)

    @property
    def text(self) -> str:
        """The CID as written: base58btc for CIDv0, base32 (`b…`) for CIDv1."""
        if self.cid[0] == 0x01:
            return "b" + base64.b32encode(self.cid).decode().lower().rstrip("=")
        number, text = int.from_bytes(self.cid, "big"), ""
        while number:
            number, digit = divmod(number, 58)
            text = _BASE58[digit] + text
        return text  # a multihash never starts with a zero byte


def _cid(block: bytes, *, version: int, codec: int) -> bytes:
    multihash = SHA2_256 + hashlib.sha256(block).digest()
    return multihash if version == 0 else bytes([0x01, codec]) + multihash


def _dag_pb(links: list[tuple[Node, str]], unixfs: bytes, version: int) -> Node:
    encoded = b"".join(
        _bytes_field(
            2,
            _bytes_field(1, child.cid)
            + _bytes_field(2, name.encode())
            + _int_field(3, child.cumulative_size),
        )
        for child, name in links
    )
    block = encoded + _bytes_field(1, unixfs)
    return Node(
        cid=_cid(block, version=version, codec=DAG_PB),
        cumulative_size=len(block) + sum(child.cumulative_size for child, _ in links),
        file_size=sum(child.file_size for child, _ in links),
    )


def _leaf(chunk: bytes, version: int) -> Node:
    if version == 1:  # a raw block
        return Node(cid=_cid(chunk, version=1, codec=RAW), cumulative_size=len(chunk), file_size=len(chunk))
    unixfs = _int_field(1, _FILE) + (_bytes_field(2, chunk) if chunk else b"") + _int_field(3, len(chunk))
    block = _bytes_field(1, unixfs)
    return Node(cid=_cid(block, version=0, codec=DAG_PB), cumulative_size=len(block), file_size=len(chunk))


def _file_node(children: list[Node], version: int) -> Node:
    total = sum(child.file_size for child in children)
    unixfs = (
        _int_field(1, _FILE)
        + _int_field(3, total)
        + b"".join(_int_field(4, child.file_size) for child in children)
    )
    return _dag_pb([(child, "") for child in children], unixfs, version)


def file_dag(data: bytes, *, version: int) -> Node:
    """The root of a file's DAG as `ipfs add` (version 0) or `--cid-version=1` builds it."""
    leaves = [_leaf(data[at : at + CHUNK], version) for at in range(0, max(len(data), 1), CHUNK)]
    if len(leaves) == 1:
        return leaves[0]
    # Balanced layout: fill a node of depth 1, then grow a new root over the full one and fill
    # its next subtrees to the same depth, until the leaves run out.
    queue = iter(leaves)
    pending = [next(queue)]

    def fill(depth: int) -> Node | None:
        children: list[Node] = []
        while len(children) < MAX_LINKS:
            if depth == 1:
                leaf = pending.pop() if pending else next(queue, None)
                if leaf is None:
                    break
                children.append(leaf)
            else:
                child = fill(depth - 1)
                if child is None:
                    break
                children.append(child)
        return _file_node(children, version) if children else None

    root = fill(1)
    depth = 1
    while True:
        following = next(queue, None)
        if following is None:
            break
        pending.append(following)
        depth += 1
        siblings: list[Node] = [root] if root is not None else []
        while len(siblings) < MAX_LINKS:
            child = fill(depth - 1)
            if child is None:
                break
            siblings.append(child)
        root = _file_node(siblings, version)
    assert root is not None
    return root


def directory(entries: dict[str, Node], *, version: int) -> Node:
    """A directory of `entries` (name → root of its DAG), links sorted by name as kubo sorts them."""
    links = [(entries[name], name) for name in sorted(entries, key=lambda n: n.encode())]
    return _dag_pb(links, _int_field(1, _DIRECTORY), version)
