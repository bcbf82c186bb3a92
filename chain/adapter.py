"""The one adapter to the chain: JSON-RPC over HTTP to a node, and the GliskNFT contract on it.

Every call has a timeout; failures come out as `ChainError` subclasses that say whether a retry
can help (`transient`). The RPC URL can carry an API key, so it is never logged and never put in
an exception message. Many view calls go out as one JSON-RPC batch.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
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
from glisk.core.budgets import RPC, BudgetExhausted, budget_acquire, budget_limit, budget_throttled

# What one call costs in compute units, as Alchemy prices them: an account has a budget of
# compute units a second (RPC_COMPUTE_UNITS_PER_SECOND), shared by every worker through the
# limiter in PostgreSQL. A method not listed costs DEFAULT_COMPUTE_UNITS; the devnet's own
# methods (anvil_*, evm_*) cost nothing.
COMPUTE_UNITS = {
    "eth_chainId": 0,
    "net_version": 0,
    "eth_syncing": 0,
    "eth_blockNumber": 10,
    "eth_feeHistory": 10,
    "eth_maxPriorityFeePerGas": 10,
    "eth_getTransactionReceipt": 15,
    "eth_getBlockByNumber": 16,
    "eth_getBlockByHash": 16,
    "eth_getTransactionByHash": 17,
    "eth_gasPrice": 19,
    "eth_getBalance": 19,
    "eth_getCode": 26,
    "eth_call": 26,
    "eth_getTransactionCount": 26,
    "eth_getLogs": 75,
    "eth_estimateGas": 87,
    "eth_sendRawTransaction": 250,
}
DEFAULT_COMPUTE_UNITS = 26

# Multicall3, at the same address on every chain that has it (Base mainnet and Sepolia do).
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3_SELECTOR = "0x82ad56cb"  # aggregate3((address,bool,bytes)[])
MULTICALL_TOKENS = 100  # tokens a Multicall3 read covers (300 view calls, well under a block's gas)
# How long one call may wait for its turn in the compute-unit budget before it gives up as
# throttled (its caller retries later, as after any RPC hiccup).
RPC_ADMISSION_WAIT_MAX_SECONDS = 30.0


def _batches(
    calls: Sequence[tuple[str, list[Any]]], *, chunk: int, max_units: float
) -> Iterator[Sequence[tuple[str, list[Any]]]]:
    """`calls` in runs of at most `chunk` calls and `max_units` compute units (0: no bound)."""
    start, units = 0, 0
    for at, (method, _) in enumerate(calls):
        cost = compute_units({"method": method})
        if at > start and (at - start >= chunk or (max_units and units + cost > max_units)):
            yield calls[start:at]
            start, units = at, 0
        units += cost
    if start < len(calls):
        yield calls[start:]


def _inner_result(ok: bool, data: bytes) -> Any:
    """One Multicall3 view call's return data (hex), or what its failure means: a revert with data
    is the contract's answer (a token that does not exist); a failure without data (out of gas
    inside the multicall) says nothing about the token, and is retried like a node's hiccup."""
    if ok:
        return "0x" + data.hex()
    if not data:
        return RpcUnavailable("a view call inside Multicall3 failed without revert data")
    return decode_revert(data)


def compute_units(payload: Any) -> int:
    """The compute units a JSON-RPC request (one call or a batch) costs."""
    calls = payload if isinstance(payload, list) else [payload]
    total = 0
    for call in calls:
        method = str(call.get("method", "")) if isinstance(call, dict) else ""
        if method.startswith(("anvil_", "evm_")):
            continue
        total += COMPUTE_UNITS.get(method, DEFAULT_COMPUTE_UNITS)
    return total


logger = logging.getLogger(__name__)


class ChainError(Exception):
    """A failed chain call. `transient` says whether retrying later can help."""

    transient = False


class RpcUnavailable(ChainError):
    """The node did not answer usefully: timeout, connection refused, HTTP 429/5xx."""

    transient = True


_RATE_LIMITED = re.compile(r"limit|rate|too many|throttl|capacity", re.I)


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
            if code == 429 or (code == -32005 and _RATE_LIMITED.search(message)):
                # -32005 "limit exceeded" / "request rate exceeded": how Infura, QuickNode and
                # others say 429 inside JSON-RPC.
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
        for part in _batches(calls, chunk=chunk, max_units=max_units):
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
