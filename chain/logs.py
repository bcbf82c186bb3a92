"""Decoding the contract's `BatchMinted` logs, whoever delivered them (webhook, watcher, recovery)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from chain import abi


class MalformedLog(ValueError):
    """A log that claims to be BatchMinted but does not decode as one."""


@dataclass(frozen=True)
class MintLog:
    """A decoded `BatchMinted` log with where it sits on chain."""

    minter: str
    prompt_author: str
    start_token_id: int
    quantity: int
    total_paid_wei: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_timestamp: datetime | None = None


def _word_address(topic: str) -> str:
    raw = HexBytes(topic)
    if len(raw) != 32 or any(raw[:12]):
        raise MalformedLog("an indexed address topic must be 32 bytes with 12 zero bytes first")
    return to_checksum_address(raw[12:])


def decode_batch_minted(topics: Sequence[str], data: str) -> tuple[str, str, int, int, int]:
    """(minter, prompt author, start id, quantity, total paid) from a BatchMinted log's parts."""
    try:
        if len(topics) != 4 or str(topics[0]).lower() != abi.BATCH_MINTED_TOPIC:
            raise MalformedLog("not a BatchMinted log (topic0 or topic count)")
        minter, author = _word_address(topics[1]), _word_address(topics[2])
        start_raw = HexBytes(topics[3])
        if len(start_raw) != 32:
            raise MalformedLog("startTokenId topic must be 32 bytes")
        start = int.from_bytes(start_raw, "big")
        body = HexBytes(data)
        if len(body) != 64:
            raise MalformedLog("BatchMinted data must be exactly two 32-byte words")
        quantity, total_paid = abi_decode(["uint256", "uint256"], bytes(body))
    except (ValueError, TypeError) as exc:
        if isinstance(exc, MalformedLog):
            raise
        raise MalformedLog(f"undecodable BatchMinted log: {type(exc).__name__}") from exc
    if start < 1 or not 1 <= quantity <= abi.MAX_BATCH_SIZE:
        raise MalformedLog(f"BatchMinted out of range (start {start}, quantity {quantity})")
    return minter, author, start, quantity, total_paid
