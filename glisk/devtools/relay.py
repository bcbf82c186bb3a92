"""A devnet stand-in for Alchemy's Custom (GraphQL) webhook.

It watches the local chain and POSTs, for every block holding BatchMinted logs of our contract,
the payload Alchemy would send (shape in docs/reference.md), signed with the webhook secret,
retrying non-200 answers on Alchemy's schedule. The demo runs it so that the webhook path is
exercised for real.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from chain import abi
from chain.adapter import GliskChain
from chain.errors import ChainError

logger = logging.getLogger(__name__)

# Alchemy's documented retry intervals after a non-200 answer or a timeout.
ALCHEMY_RETRY_SECONDS = (15.0, 60.0, 600.0)
ALCHEMY_TIMEOUT_SECONDS = 5.0


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_alchemy_payload(
    chain: GliskChain, block_number: int, *, network: str = "DEVNET", sequence: int = 1
) -> dict[str, Any] | None:
    """Alchemy's GraphQL delivery for `block_number`, or None when it holds none of our logs."""
    logs = chain.rpc(
        "eth_getLogs",
        [
            {
                "address": chain.contract_address,
                "fromBlock": hex(block_number),
                "toBlock": hex(block_number),
                "topics": [abi.BATCH_MINTED_TOPIC],
            }
        ],
    )
    if not logs:
        return None
    block = chain.get_block(block_number)
    tx_hashes = sorted({log["transactionHash"] for log in logs})
    receipts = dict(
        zip(tx_hashes, chain.rpc_batch([("eth_getTransactionReceipt", [h]) for h in tx_hashes]), strict=True)
    )
    out_logs = []
    for log in logs:
        receipt = receipts[log["transactionHash"]]
        if isinstance(receipt, ChainError) or not receipt:
            raise ChainError(f"no receipt for {log['transactionHash']}")
        out_logs.append(
            {
                "index": int(log["logIndex"], 16),
                "account": {"address": str(log["address"]).lower()},
                "topics": log["topics"],
                "data": log["data"],
                "transaction": {
                    "hash": log["transactionHash"],
                    "index": int(log["transactionIndex"], 16),
                    "from": {"address": str(receipt["from"]).lower()},
                    "to": {"address": str(receipt.get("to") or "").lower()},
                    "status": int(receipt["status"], 16),
                },
            }
        )
    now = datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "webhookId": "wh_devnet_relay",
        "id": "whevt_" + secrets.token_hex(8),
        "createdAt": now,
        "type": "GRAPHQL",
        "event": {
            "data": {
                "block": {
                    "hash": block["hash"],
                    "number": block_number,
                    "timestamp": int(block["timestamp"], 16),
                    "logs": out_logs,
                }
            },
            "sequenceNumber": str(sequence),
            "network": network,
        },
    }


@dataclass
class _Pending:
    body: bytes
    block_number: int
    attempt: int = 0
    due: float = 0.0


class WebhookRelay:
    """Polls the chain and delivers signed payloads to `url`; `run()` until `stop()`."""

    def __init__(
        self,
        *,
        chain: GliskChain,
        url: str,
        secret: str,
        start_block: int,
        poll_seconds: float = 0.25,
        retry_seconds: tuple[float, ...] = ALCHEMY_RETRY_SECONDS,
        network: str = "DEVNET",
    ):
        self.chain, self.url, self.secret = chain, url, secret
        self.next_block = start_block
        self.poll_seconds, self.retry_seconds, self.network = poll_seconds, retry_seconds, network
        self.pending: list[_Pending] = []
        self.delivered = 0
        self.failed = 0
        self.sequence = 0
        self._stop = threading.Event()
        self._session = requests.Session()

    def stop(self) -> None:
        self._stop.set()

    def _post(self, item: _Pending) -> bool:
        headers = {"Content-Type": "application/json", "X-Alchemy-Signature": sign(item.body, self.secret)}
        try:
            response = self._session.post(
                self.url, data=item.body, headers=headers, timeout=ALCHEMY_TIMEOUT_SECONDS
            )
            ok = response.status_code == 200
            status: Any = response.status_code
        except requests.RequestException as exc:
            ok, status = False, type(exc).__name__
        if ok:
            self.delivered += 1
            logger.info("relay.delivered", extra={"block": item.block_number, "attempt": item.attempt + 1})
            return True
        if item.attempt >= len(self.retry_seconds):
            self.failed += 1
            logger.error("relay.gave_up", extra={"block": item.block_number, "status": status})
            return True
        item.due = time.monotonic() + self.retry_seconds[item.attempt]
        item.attempt += 1
        logger.warning(
            "relay.retry_scheduled",
            extra={"block": item.block_number, "status": status, "attempt": item.attempt},
        )
        return False

    def step(self) -> None:
        """Deliver due retries, then every new block's payload."""
        now = time.monotonic()
        self.pending = [p for p in self.pending if p.due > now or not self._post(p)]
        head = self.chain.block_number()
        while self.next_block <= head and not self._stop.is_set():
            self.sequence += 1
            payload = build_alchemy_payload(
                self.chain, self.next_block, network=self.network, sequence=self.sequence
            )
            if payload is not None:
                item = _Pending(body=json.dumps(payload).encode(), block_number=self.next_block)
                if not self._post(item):
                    self.pending.append(item)
            self.next_block += 1

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except ChainError as exc:
                logger.warning("relay.chain_unavailable", extra={"error": str(exc)})
                self._stop.wait(1.0)
            self._stop.wait(self.poll_seconds)
