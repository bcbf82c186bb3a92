"""django-q2 tasks that speak to the chain: the keeper, the log watcher, start-up recovery."""

from __future__ import annotations

import logging
from typing import Any

from chain.adapter import GliskChain
from chain.errors import ChainError
from chain.services.keeper import reveal_run
from chain.services.recovery import tokens_recover
from chain.services.watcher import watcher_run
from chain.services.webhooks import webhook_deliveries_prune
from glisk.core.stages import stage_nudge, stage_started
from lifecycle.selectors import reveal_waiting_exists

logger = logging.getLogger(__name__)


def reveal_stage() -> dict[str, Any] | None:
    stage_started(stage="reveal")
    report = reveal_run()
    if report is None:
        return None  # another process is the contract's sender right now
    # A token that became ready after our last look, while its nudge found the lock taken.
    if reveal_waiting_exists():
        stage_nudge(stage="reveal")
    return vars(report)


def prune_webhooks() -> dict[str, int]:
    return webhook_deliveries_prune()


def watcher() -> int:
    return watcher_run()


def recover_on_start() -> dict[str, Any]:
    try:
        chain = GliskChain.from_settings()
        chain.check_chain_id()
        return tokens_recover(chain=chain).as_dict()
    except ChainError as exc:
        logger.error("recovery.on_start_failed", extra={"error": str(exc)})
        return {"error": str(exc)}
