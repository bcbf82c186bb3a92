"""What each JSON-RPC call costs in compute units, as Alchemy prices them, and batches cut so
that none costs more than a budget's burst (an endpoint refuses any request dearer than that)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

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


def call_batches(
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
