"""Acting on the right chain: the keeper and the watcher check their RPC's chain id before they
act, and act on nothing when it is another chain (a mistyped RPC_URL would otherwise make the
keeper rebroadcast forever and the watcher follow another chain's head)."""

from __future__ import annotations

import logging

from django.utils import timezone

from chain.adapter import GliskChain, WrongChain
from glisk.core.state import state_delete, state_get, state_set

logger = logging.getLogger(__name__)

WRONG_CHAIN_KEY = "chain.wrong_chain"


def chain_checked(*, chain: GliskChain, actor: str) -> bool:
    """Whether `chain`'s RPC serves the configured chain; on a mismatch, say so (once per call,
    in the log and in SystemState for the dashboard and /health) and return False."""
    try:
        chain.check_chain_id()
    except WrongChain as exc:
        logger.error(
            "chain.wrong_chain", extra={"actor": actor, "expected": exc.expected, "actual": exc.actual}
        )
        state_set(
            key=WRONG_CHAIN_KEY,
            value={
                "at": timezone.now().isoformat(),
                "expected": exc.expected,
                "actual": exc.actual,
                "actor": actor,
            },
        )
        return False
    state_delete(key=WRONG_CHAIN_KEY)
    return True


def wrong_chain_problem() -> str | None:
    """The problem as operators see it, or None (no RPC URL in it: it may hold a key)."""
    found = state_get(key=WRONG_CHAIN_KEY)
    if not isinstance(found, dict):
        return None
    return (
        f"the RPC endpoint serves chain {found.get('actual')}, but NETWORK expects chain "
        f"{found.get('expected')}: the {found.get('actor', 'pipeline')} acts on nothing until the "
        "RPC endpoint is fixed"
    )
