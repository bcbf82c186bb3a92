"""The log watcher: BatchMinted logs from a cursor up to head - confirmations, via ingestion.
It also settles disputed mints (chain.services.disputes) once they are confirmed.

The cursor moves in the same transaction as the ingestion of the range it covers, so a crash
never leaves a gap or a repeat. Only one watcher runs per contract (an advisory lock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from chain.adapter import GliskChain
from chain.errors import ChainError, WrongChain
from chain.models import MintEvent
from chain.services.disputes import mint_disputes_settle
from chain.services.guard import ChainGuard
from chain.services.ingestion import mint_logs_ingest
from glisk.core.state import advisory_lock, state_get, state_get_for_update, state_set
from lifecycle.selectors import tokens_disputed_exist

logger = logging.getLogger(__name__)


def cursor_key(chain: GliskChain) -> str:
    return f"watcher.cursor.{chain.chain_id}.{chain.contract_address.lower()}"


@dataclass
class WatcherStep:
    from_block: int
    to_block: int
    head: int
    mint_logs: int
    tokens_new: int

    @property
    def caught_up(self) -> bool:
        return self.to_block >= self.head - settings.GLISK.watcher_confirmations


def watcher_step(*, chain: GliskChain) -> WatcherStep | None:
    """Read one bounded range past the cursor and ingest it; None when there is nothing safe to read."""
    config = settings.GLISK
    key = cursor_key(chain)
    last = state_get(key=key, default={}).get("block")
    start = config.contract_deployment_block if last is None else int(last) + 1
    head = chain.block_number()
    safe = head - config.watcher_confirmations
    if safe < start:
        return None
    end = min(safe, start + config.watcher_max_block_range - 1)
    logs = chain.mint_logs(start, end)
    # The RPC could have been swapped for another chain since the run's check: never move the
    # cursor along what another chain said (raises WrongChain).
    chain.check_chain_id()
    with transaction.atomic():
        # Lock the cursor row: a second watcher (should the advisory lock be bypassed) waits,
        # then sees that the range moved and writes nothing twice (ingestion is idempotent too).
        current = (state_get_for_update(key=key, default={}) or {}).get("block")
        if current is not None and int(current) >= end:
            return None
        result = mint_logs_ingest(logs=logs, chain_id=chain.chain_id, source=MintEvent.Source.WATCHER)
        state_set(key=key, value={"block": end, "head": head})
    step = WatcherStep(
        from_block=start, to_block=end, head=head, mint_logs=len(logs), tokens_new=result.tokens_new
    )
    if logs:
        logger.info(
            "watcher.ingested",
            extra={"from_block": start, "to_block": end, "logs": len(logs), "tokens_new": result.tokens_new},
        )
    return step


def watcher_run(
    *,
    chain: GliskChain | None = None,
    duration: float = 290.0,
    poll_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow the chain for `duration` seconds (the schedule starts the next run).

    Returns the number of steps taken; 0 if another watcher holds the lock. RPC failures back
    off exponentially up to 30 s and never end the run.
    """
    chain = chain or GliskChain.from_settings()
    steps = 0
    with advisory_lock(f"watcher:{chain.chain_id}:{chain.contract_address.lower()}") as got:
        if not got:
            logger.info("watcher.already_running")
            return 0
        guard = ChainGuard(chain=chain, actor="watcher")
        deadline = time.monotonic() + duration
        backoff = poll_seconds
        while time.monotonic() < deadline:
            try:
                if not guard.check():
                    # Another chain: act on nothing; end the run (freeing the lock for a cluster
                    # whose RPC is right) or, if it had started right, check again a few times.
                    if guard.should_stop():
                        break
                    sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                step = watcher_step(chain=chain)
                if tokens_disputed_exist():
                    mint_disputes_settle(chain=chain, head=step.head if step else None)
                backoff = poll_seconds
            except WrongChain as exc:
                guard.wrong(exc)
                if guard.should_stop():
                    break
                sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except ChainError as exc:
                logger.warning("watcher.rpc_failed", extra={"error": str(exc), "retry_in": backoff})
                sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            steps += 1
            if step is None or step.caught_up:
                sleep(poll_seconds)
    return steps
