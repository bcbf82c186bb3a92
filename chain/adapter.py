"""The one adapter to the chain: JSON-RPC over HTTP to a node, and the GliskNFT contract on it.

Every call has a timeout; failures come out as `ChainError` subclasses that say whether a retry
can help (`transient`). The RPC URL can carry an API key, so it is never logged and never put in
an exception message. Many view calls go out as one JSON-RPC batch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from chain import abi
from chain.errors import (
    ChainError,
    ContractRevert,
    RpcError,
    RpcThrottled,
    RpcUnavailable,
    WrongChain,
    decode_revert,
    rate_limited,
)
from chain.logs import MalformedLog, MintLog, decode_batch_minted
from chain.pricing import call_batches, compute_units
from glisk.core.budgets import RPC, BudgetExhausted, budget_acquire, budget_limit, budget_throttled

# Multicall3, at the same address on every chain that has it (Base mainnet and Sepolia do).
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3_SELECTOR = "0x82ad56cb"  # aggregate3((address,bool,bytes)[])
MULTICALL_TOKENS = 100  # tokens a Multicall3 read covers (300 view calls, well under a block's gas)
# How long one call may wait for its turn in the compute-unit budget before it gives up as
# throttled (its caller retries later, as after any RPC hiccup).
RPC_ADMISSION_WAIT_MAX_SECONDS = 30.0


def _inner_result(ok: bool, data: bytes) -> Any:
    """One Multicall3 view call's return data (hex), or what its failure means: a revert with data
    is the contract's answer (a token that does not exist); a failure without data (out of gas
    inside the multicall) says nothing about the token, and is retried like a node's hiccup."""
    if ok:
        return "0x" + data.hex()
    if not data:
        return RpcUnavailable("a view call inside Multicall3 failed without revert data")
    return decode_revert(data)


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeeHistory:
    base_fees: list[int]
    rewards: list[list[int]]


@dataclass(frozen=True)
class TokenOnChain:
    token_id: int
    prompt_author: str
    revealed: bool
    token_uri: str


class GliskChain:
    """JSON-RPC client for one node and the GliskNFT contract at `contract_address`."""

    def __init__(
        self,
        *,
        rpc_url: str,
        contract_address: str,
        chain_id: int,
        timeout: float = 10.0,
        budget: str | None = RPC,
    ):
        """`budget`: the compute-unit budget its requests are admitted through (the Base RPC's
        account by default; None for an endpoint of another account, such as Farcaster's)."""
        if not rpc_url:
            raise ChainError("no RPC endpoint is configured (RPC_URL, ALCHEMY_API_KEY or `manage.py devnet`)")
        self._rpc_url = rpc_url  # may hold an API key: never logged or shown
        self.contract_address = to_checksum_address(contract_address) if contract_address else ""
        self.chain_id = chain_id
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session = requests.Session()
        self._multicall3: bool | None = None
        self.budget = budget

    @classmethod
    def from_settings(cls) -> GliskChain:
        from django.conf import settings

        c = settings.GLISK
        return cls(
            rpc_url=c.rpc_url,
            contract_address=c.contract_address,
            chain_id=c.chain_id,
            timeout=c.rpc_timeout_seconds,
        )

    def with_contract(self, contract_address: str) -> GliskChain:
        """The same endpoint, another contract address."""
        return GliskChain(
            rpc_url=self._rpc_url,
            contract_address=contract_address,
            chain_id=self.chain_id,
            timeout=self.timeout,
            budget=self.budget,
        )

    def __repr__(self) -> str:
        return f"GliskChain(chain_id={self.chain_id}, contract={self.contract_address})"

    # --- JSON-RPC --------------------------------------------------------------------------
    def _post(self, payload: Any) -> Any:
        cost = compute_units(payload)
        if cost and self.budget is not None:
            try:
                budget_acquire(name=self.budget, cost=cost, max_wait=RPC_ADMISSION_WAIT_MAX_SECONDS)
            except BudgetExhausted as exc:
                raise RpcThrottled(str(exc), retry_after=exc.wait) from None
        try:
            response = self._session.post(self._rpc_url, json=payload, timeout=self.timeout)
        except requests.Timeout:
            raise RpcUnavailable(f"the RPC endpoint did not answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise RpcUnavailable(f"the RPC endpoint is unreachable ({type(exc).__name__})") from None
        if response.status_code == 429:
            raise self._throttled(response.headers, response.text[:500])
        if response.status_code >= 500:
            raise RpcUnavailable(f"the RPC endpoint answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise ChainError(f"the RPC endpoint answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise RpcUnavailable("the RPC endpoint answered with something that is not JSON") from None

    def _throttled(self, headers: Any, body: Any, *, pause: bool = True) -> RpcThrottled:
        """A 429 from the endpoint: the account's compute-unit budget pauses for what it named
        (once per answer: a batch's refused calls are one refusal, not one each)."""
        from lifecycle.providers.errors import throttle_seconds

        seconds = throttle_seconds(headers or {}, body)
        if pause:
            self._pause(seconds)
        return RpcThrottled("the RPC endpoint answered 429 (compute units per second exceeded)", seconds)

    def _pause(self, seconds: float | None) -> None:
        if self.budget is not None:
            budget_throttled(name=self.budget, seconds=1.0 if seconds is None else seconds)

    def _unwrap(self, reply: Any, *, pause: bool = True) -> Any:
        if not isinstance(reply, dict):
            raise RpcUnavailable("malformed JSON-RPC reply")
        error = reply.get("error")
        if error:
            if not isinstance(error, dict):
                raise RpcUnavailable("malformed JSON-RPC error")
            try:
                code = int(error.get("code", 0))
            except (TypeError, ValueError):
                code = 0
            message = str(error.get("message", ""))
            if rate_limited(code, message):
                raise self._throttled({}, message, pause=pause)
            data = error.get("data")
            if (code == 3 or "revert" in message.lower()) and isinstance(data, str) and data.startswith("0x"):
                raise decode_revert(data)
            if "revert" in message.lower():
                raise ContractRevert("Error", (message,), "")
            raise RpcError(code, message, data)
        return reply.get("result")

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call; raises a `ChainError` on failure."""
        return self._unwrap(
            self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []})
        )

    def rpc_batch(self, calls: Sequence[tuple[str, list[Any]]], chunk: int = 200) -> list[Any]:
        """Many calls as JSON-RPC batches; each result is a value or the `ChainError` it raised.
        A batch holds at most `chunk` calls and, with a compute-unit budget, no more compute units
        than the budget's burst: the endpoint refuses any one request dearer than that."""
        results: list[Any] = []
        max_units = budget_limit(self.budget).burst if self.budget is not None else 0.0
        for part in call_batches(calls, chunk=chunk, max_units=max_units):
            first = next(self._ids)
            ids = [first + i for i in range(len(part))]
            self._ids = itertools.count(ids[-1] + 1)
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in zip(ids, part, strict=True)
            ]
            replies = self._post(payload)
            if not isinstance(replies, list):
                # A node that refuses batches answers with one error object.
                raise RpcUnavailable("the RPC endpoint did not accept a JSON-RPC batch")
            by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
            refused: list[RpcThrottled] = []
            for i in ids:
                try:
                    results.append(self._unwrap(by_id.get(i), pause=False))
                except RpcThrottled as exc:
                    refused.append(exc)
                    results.append(exc)
                except ChainError as exc:
                    results.append(exc)
            if refused:
                self._pause(max((exc.retry_after or 0.0 for exc in refused), default=0.0) or None)
        return results

    # --- chain -----------------------------------------------------------------------------
    def actual_chain_id(self) -> int:
        return int(self.rpc("eth_chainId"), 16)

    def check_chain_id(self) -> None:
        actual = self.actual_chain_id()
        if actual != self.chain_id:
            raise WrongChain(self.chain_id, actual)

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def get_block(self, number: int | str = "latest") -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        block = self.rpc("eth_getBlockByNumber", [tag, False])
        if block is None:
            raise ChainError(f"block {number} is unknown to the node")
        return block

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", [address, "latest"]), 16)

    def transaction_count(self, address: str, block: str = "latest") -> int:
        """The address's nonce as of `block` ("pending" counts what the node's pool holds)."""
        return int(self.rpc("eth_getTransactionCount", [address, block]), 16)

    def fee_history(self, *, blocks: int, percentiles: Sequence[int]) -> FeeHistory:
        """Base fees (with the next block's last) and the priority fees paid at `percentiles`."""
        history = self.rpc("eth_feeHistory", [hex(blocks), "latest", list(percentiles)]) or {}
        return FeeHistory(
            base_fees=[int(x, 16) for x in history.get("baseFeePerGas") or ["0x0"]],
            rewards=[[int(x, 16) for x in r] for r in history.get("reward") or [] if r],
        )

    def estimate_gas(self, *, sender: str, data: str) -> int:
        """Gas for a call of the contract from `sender`; a revert comes out typed."""
        return int(
            self.rpc("eth_estimateGas", [{"from": sender, "to": self.contract_address, "data": data}]), 16
        )

    def send_raw_transaction(self, raw: bytes, *, tx_hash: str) -> None:
        """Broadcast signed bytes. A node that refuses them but knows `tx_hash` already (in its pool
        or mined) has them, which is what a rebroadcast wants; any other refusal is raised."""
        try:
            self.rpc("eth_sendRawTransaction", [HexBytes(raw).to_0x_hex()])
        except RpcError:
            if self.transaction(tx_hash) is None:
                raise

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        """The transaction as the node knows it (pending or mined), or None."""
        found = self.rpc("eth_getTransactionByHash", [tx_hash])
        return found if isinstance(found, dict) else None

    def receipts(self, tx_hashes: Sequence[str]) -> list[dict[str, Any] | None]:
        """Receipts of many transactions in one batch; None for the ones not mined."""
        results = self.rpc_batch([("eth_getTransactionReceipt", [h]) for h in tx_hashes])
        for result in results:
            if isinstance(result, ChainError):
                raise result
        return [r if isinstance(r, dict) else None for r in results]

    # --- contract views --------------------------------------------------------------------
    def _calldata(self, fn: str, types: Sequence[str], args: Sequence[Any]) -> str:
        return abi.calldata(fn, list(types), list(args))

    def _eth_call(self, data: str) -> tuple[str, list[Any]]:
        return ("eth_call", [{"to": self.contract_address, "data": data}, "latest"])

    def call_deployless(self, init_code: str) -> bytes:
        """Run `init_code` as a simulated contract creation (an `eth_call` with no `to`) and return
        what its constructor returned; nothing is deployed."""
        return bytes(HexBytes(self.rpc("eth_call", [{"data": init_code}, "latest"]) or "0x"))

    def call(
        self, fn: str, types: Sequence[str], args: Sequence[Any], returns: Sequence[str]
    ) -> tuple[Any, ...]:
        result = self.rpc(*self._eth_call(self._calldata(fn, types, args)))
        return tuple(abi_decode(list(returns), bytes(HexBytes(result))))

    def next_token_id(self) -> int:
        return int(self.call("nextTokenId", [], [], ["uint256"])[0])

    def has_role(self, role: str, account: str) -> bool:
        return bool(self.call("hasRole", ["bytes32", "address"], [HexBytes(role), account], ["bool"])[0])

    def token_states(self, token_ids: Iterable[int]) -> dict[int, TokenOnChain | ChainError]:
        """`tokenPromptAuthor`, `isRevealed` and `tokenURI` for many tokens: through Multicall3 (one
        `eth_call` a MULTICALL_TOKENS tokens, 26 compute units) where the chain has it, as Base
        does, else as JSON-RPC batches (three `eth_call`s a token)."""
        ids = list(token_ids)
        if len(ids) > 1 and self.has_multicall3():
            results: list[Any] = []
            for start in range(0, len(ids), MULTICALL_TOKENS):
                results += self._multicall(self._token_calls(ids[start : start + MULTICALL_TOKENS]))
        else:
            results = self.rpc_batch([self._eth_call(data) for data in self._token_calls(ids)], chunk=300)
        states: dict[int, TokenOnChain | ChainError] = {}
        for n, token_id in enumerate(ids):
            author, revealed, uri = results[3 * n : 3 * n + 3]
            failure = next((r for r in (author, revealed, uri) if isinstance(r, ChainError)), None)
            if failure is not None:
                states[token_id] = failure
                continue
            try:
                states[token_id] = TokenOnChain(
                    token_id=token_id,
                    prompt_author=to_checksum_address(abi_decode(["address"], bytes(HexBytes(author)))[0]),
                    revealed=bool(abi_decode(["bool"], bytes(HexBytes(revealed)))[0]),
                    token_uri=str(abi_decode(["string"], bytes(HexBytes(uri)))[0]),
                )
            except (DecodingError, ValueError) as exc:
                states[token_id] = ChainError(f"undecodable view result for token {token_id}: {exc}")
        return states

    def _token_calls(self, ids: list[int]) -> list[str]:
        calls = []
        for token_id in ids:
            calls.append(self._calldata("tokenPromptAuthor", ["uint256"], [token_id]))
            calls.append(self._calldata("isRevealed", ["uint256"], [token_id]))
            calls.append(self._calldata("tokenURI", ["uint256"], [token_id]))
        return calls

    def has_multicall3(self) -> bool:
        """Whether Multicall3 is at its canonical address (asked once, while the answer is sure)."""
        if self._multicall3 is None:
            code = self.rpc("eth_getCode", [MULTICALL3, "latest"])
            self._multicall3 = isinstance(code, str) and code not in ("", "0x", "0x0")
        return self._multicall3

    def _multicall(self, calls: list[str]) -> list[Any]:
        """Our contract's view `calls` in one `aggregate3` call; each result is the call's return
        data (hex) or the `ChainError` its revert decodes to."""
        data = (
            AGGREGATE3_SELECTOR
            + abi_encode(
                ["(address,bool,bytes)[]"], [[(self.contract_address, True, HexBytes(c)) for c in calls]]
            ).hex()
        )
        answer = self.rpc("eth_call", [{"to": MULTICALL3, "data": data}, "latest"])
        try:
            (pairs,) = abi_decode(["(bool,bytes)[]"], bytes(HexBytes(answer)))
        except (DecodingError, ValueError, TypeError) as exc:
            raise RpcUnavailable(f"undecodable Multicall3 answer ({type(exc).__name__})") from None
        if len(pairs) != len(calls):
            raise RpcUnavailable("Multicall3 answered a different number of results")
        return [_inner_result(ok, bytes(ret)) for ok, ret in pairs]

    # --- events ----------------------------------------------------------------------------
    def mint_logs(self, from_block: int, to_block: int) -> list[MintLog]:
        """Every BatchMinted log of the contract in [from_block, to_block], with block times."""
        raw_logs = self.rpc(
            "eth_getLogs",
            [
                {
                    "address": self.contract_address,
                    "fromBlock": hex(from_block),
                    "toBlock": hex(to_block),
                    "topics": [abi.BATCH_MINTED_TOPIC],
                }
            ],
        )
        if not raw_logs:
            return []
        block_numbers = sorted({int(log["blockNumber"], 16) for log in raw_logs})
        blocks = self.rpc_batch([("eth_getBlockByNumber", [hex(n), False]) for n in block_numbers])
        timestamps: dict[int, datetime] = {}
        for number, block in zip(block_numbers, blocks, strict=True):
            if isinstance(block, ChainError):
                raise block
            if not isinstance(block, dict):
                raise RpcUnavailable(f"the node does not know block {number} (reorg in progress?)")
            timestamps[number] = datetime.fromtimestamp(int(block["timestamp"], 16), tz=UTC)
        mints: list[MintLog] = []
        for log in raw_logs:
            if log.get("removed"):
                continue
            try:
                minter, author, start, quantity, paid = decode_batch_minted(log["topics"], log["data"])
            except MalformedLog:
                logger.warning("chain.log_undecodable", extra={"tx_hash": log.get("transactionHash")})
                continue
            number = int(log["blockNumber"], 16)
            mints.append(
                MintLog(
                    minter=minter,
                    prompt_author=author,
                    start_token_id=start,
                    quantity=quantity,
                    total_paid_wei=paid,
                    tx_hash=str(log["transactionHash"]).lower(),
                    log_index=int(log["logIndex"], 16),
                    block_number=number,
                    block_hash=str(log["blockHash"]).lower(),
                    block_timestamp=timestamps.get(number),
                )
            )
        return mints
