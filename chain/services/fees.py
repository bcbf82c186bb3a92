"""The keeper's fee policy: EIP-1559 fees from recent blocks, a cap, and replacement bumps.

Base's tips are tiny and its base fee very low, so the tip is the strategy's percentile of what
recent blocks paid (never zero), and the fee cap is twice the next base fee plus the tip.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chain.adapter import GliskChain
from chain.errors import ChainError

GWEI = 10**9
PERCENTILES = {"slow": 10, "medium": 50, "fast": 90}
MIN_PRIORITY_FEE_WEI = 1_000_000  # 0.001 gwei: Base's tips are tiny, but never zero
REPLACEMENT_BUMP = Decimal("1.25")  # nodes want >= +10% on both fees to accept a replacement


class FeesAboveCap(ChainError):
    transient = True


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def fees_current(*, chain: GliskChain, strategy: str, cap_gwei: Decimal | None) -> Fees:
    """Fees for a transaction now at `strategy` (slow / medium / fast), capped at `cap_gwei`."""
    history = chain.fee_history(blocks=10, percentiles=[PERCENTILES[strategy]])
    rewards = sorted(r[0] for r in history.rewards)
    tip = max(MIN_PRIORITY_FEE_WEI, rewards[len(rewards) // 2] if rewards else 0)
    next_base = history.base_fees[-1]
    max_fee = 2 * next_base + tip
    if cap_gwei is not None:
        cap_wei = int(cap_gwei * GWEI)
        if cap_wei < next_base + tip:
            raise FeesAboveCap(
                f"base fee {next_base / GWEI:.4f} gwei + tip exceeds REVEAL_MAX_FEE_GWEI={cap_gwei}"
            )
        max_fee = min(max_fee, cap_wei)
    return Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=min(tip, max_fee))


def fees_replacing(*, stuck: Fees, current: Fees, cap_gwei: Decimal | None) -> Fees:
    """Fees for a replacement of a stuck transaction: past the node's threshold, and at least now's."""
    bumped = Fees(
        max_fee_per_gas=max(
            current.max_fee_per_gas, int(Decimal(stuck.max_fee_per_gas) * REPLACEMENT_BUMP) + 1
        ),
        max_priority_fee_per_gas=max(
            current.max_priority_fee_per_gas,
            int(Decimal(stuck.max_priority_fee_per_gas) * REPLACEMENT_BUMP) + 1,
        ),
    )
    if cap_gwei is not None and bumped.max_fee_per_gas > int(cap_gwei * GWEI):
        raise FeesAboveCap("replacing the stuck reveal would exceed REVEAL_MAX_FEE_GWEI")
    return bumped
