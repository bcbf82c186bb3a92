"""What a chain call can fail with: `ChainError` and its kinds (unavailable, throttled, a JSON-RPC
error, the wrong chain, a contract revert decoded from its data)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from hexbytes import HexBytes

from chain import abi


class ChainError(Exception):
    """A failed chain call. `transient` says whether retrying later can help."""

    transient = False


class RpcUnavailable(ChainError):
    """The node did not answer usefully: timeout, connection refused, HTTP 429/5xx."""

    transient = True


_RATE_LIMITED = re.compile(r"limit|rate|too many|throttl|capacity", re.I)


def rate_limited(code: int, message: str) -> bool:
    """A JSON-RPC error that means the account is out of budget: Alchemy's 429, or the -32005
    "limit exceeded" / "request rate exceeded" of EIP-1474 that Infura and QuickNode answer."""
    return code == 429 or (code == -32005 and bool(_RATE_LIMITED.search(message)))


class RpcThrottled(RpcUnavailable):
    """The account's compute-unit budget is spent (HTTP 429, a JSON-RPC error 429, or our own
    shared limiter's turn too far away): the account's state, retried without counting."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RpcError(ChainError):
    """A JSON-RPC error object from the node."""

    def __init__(self, code: int, message: str, data: Any = None):
        self.code, self.rpc_message, self.data = code, message, data
        super().__init__(f"JSON-RPC error {code}: {message[:200]}")
        # -32005 limit exceeded / -32603 internal: worth retrying; others are our request's fault.
        self.transient = code in (-32005, -32603, -32000) and "revert" not in message.lower()


class WrongChain(ChainError):
    def __init__(self, expected: int, actual: int):
        self.expected, self.actual = expected, actual
        super().__init__(f"the RPC endpoint serves chain {actual}, but NETWORK expects chain {expected}")


class ContractRevert(ChainError):
    """A revert, decoded against the contract's custom errors when it is one of them."""

    def __init__(self, name: str, args: Sequence[Any] = (), data: str = ""):
        self.name, self.args_, self.data = name, tuple(args), data
        shown = ", ".join(str(a) for a in self.args_)
        super().__init__(f"reverted: {name}({shown})")


class AlreadyRevealed(ContractRevert):
    @property
    def token_id(self) -> int:
        return int(self.args_[0])


class LengthMismatch(ContractRevert):
    pass


class Unauthorized(ContractRevert):
    pass


_TYPED_REVERTS: dict[str, type[ContractRevert]] = {
    "AlreadyRevealed": AlreadyRevealed,
    "LengthMismatch": LengthMismatch,
    "AccessControlUnauthorizedAccount": Unauthorized,
}
_ERROR_STRING = "0x08c379a0"  # Error(string)
_PANIC = "0x4e487b71"  # Panic(uint256)


def decode_revert(data: str | bytes | None) -> ContractRevert:
    """Turn revert data into a typed exception (custom error, `Error(string)` or `Panic`)."""
    raw = HexBytes(data or b"")
    hex_data = raw.to_0x_hex()
    if len(raw) < 4:
        return ContractRevert("UnknownRevert", (), hex_data)
    sel, body = "0x" + raw[:4].hex(), bytes(raw[4:])
    try:
        if sel == _ERROR_STRING:
            return ContractRevert("Error", abi_decode(["string"], body), hex_data)
        if sel == _PANIC:
            return ContractRevert("Panic", abi_decode(["uint256"], body), hex_data)
        item = abi.errors_by_selector().get(sel)
        if item is not None:
            types = [p["type"] for p in item.get("inputs", [])]
            values = abi_decode(types, body) if types else ()
            return _TYPED_REVERTS.get(item["name"], ContractRevert)(item["name"], values, hex_data)
    except DecodingError:
        pass
    return ContractRevert("UnknownRevert", (), hex_data)
