"""Acting on the right chain: the keeper and the watcher check their RPC's chain id before they
act, and act on nothing when it is another chain (a mistyped RPC_URL would otherwise make the
keeper rebroadcast forever and the watcher follow another chain's head)."""

from __future__ import annotations

import logging

from django.utils import timezone

from chain.adapter import GliskChain
from chain.errors import WrongChain
from glisk.core.state import state_delete, state_get, state_set

logger = logging.getLogger(__name__)

WRONG_CHAIN_KEY = "chain.wrong_chain"
# Checks in a row on another chain after which a run that had started right ends anyway (a run
# that starts on another chain ends at once): a run holds its one-per-contract lock, and a
# cluster with a wrong RPC_URL must not keep the healthy ones' keeper and watcher waiting.
MAX_WRONG_IN_A_ROW = 4


class ChainGuard:
    """The chain-id check of one keeper or watcher run, made before each of its steps: an RPC
    swapped for another chain mid-run is caught at the next step. A mismatch is logged once per
    run and kept in SystemState (the dashboard and /health show it) until a check passes."""

    def __init__(self, *, chain: GliskChain, actor: str):
        self.chain = chain
        self.actor = actor
        self.logged = False
        self.recorded: bool | None = None  # what this run last wrote: the problem, its removal, nothing
        self.passed = False  # a check passed in this run
        self.wrong_in_a_row = 0

    def should_stop(self) -> bool:
        """Whether the run should end now (and release its lock) after a wrong check: at once if
        it never saw the right chain, else after MAX_WRONG_IN_A_ROW (the RPC may come back)."""
        return self.wrong_in_a_row > 0 and (not self.passed or self.wrong_in_a_row >= MAX_WRONG_IN_A_ROW)

    def check(self) -> bool:
        """Whether the RPC serves the configured chain now."""
        try:
            self.chain.check_chain_id()
        except WrongChain as exc:
            self.wrong(exc)
            return False
        self.right()
        return True

    def wrong(self, exc: WrongChain) -> None:
        self.wrong_in_a_row += 1
        if not self.logged:
            logger.error(
                "chain.wrong_chain",
                extra={"actor": self.actor, "expected": exc.expected, "actual": exc.actual},
            )
            self.logged = True
        if self.recorded is not True:
            state_set(
                key=WRONG_CHAIN_KEY,
                value={
                    "at": timezone.now().isoformat(),
                    "expected": exc.expected,
                    "actual": exc.actual,
                    "actor": self.actor,
                },
            )
            self.recorded = True

    def right(self) -> None:
        self.passed = True
        self.wrong_in_a_row = 0
        if self.recorded is not False:
            if self.recorded:
                logger.warning("chain.right_again", extra={"actor": self.actor})
            state_delete(key=WRONG_CHAIN_KEY)
            self.recorded = False


def chain_checked(*, chain: GliskChain, actor: str) -> bool:
    """One check (see ChainGuard): whether `chain`'s RPC serves the configured chain."""
    return ChainGuard(chain=chain, actor=actor).check()


def wrong_chain_problem(*, with_chain_ids: bool = True) -> str | None:
    """The problem as operators see it, or None. Never the RPC URL (it may hold a key); the
    public /health asks without the chain ids (the dashboard, for staff, shows them)."""
    found = state_get(key=WRONG_CHAIN_KEY)
    if not isinstance(found, dict):
        return None
    actor = found.get("actor", "pipeline")
    if not with_chain_ids:
        return (
            f"the RPC endpoint serves another chain than NETWORK expects: the {actor} acts on "
            "nothing until the RPC endpoint is fixed"
        )
    return (
        f"the RPC endpoint serves chain {found.get('actual')}, but NETWORK expects chain "
        f"{found.get('expected')}: the {actor} acts on nothing until the RPC endpoint is fixed"
    )
