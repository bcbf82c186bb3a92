"""Settling disputed mints: the chain's word on a token whose stored mint a source contradicted.

A webhook delivers at the chain head, so after a reorg (or a replayed old delivery) a log can
name another author or transaction for a token already stored; ingestion then marks the token
disputed, and so does the keeper when the chain's author differs. The watcher calls
`mint_disputes_settle` once the blocks involved have its confirmations: it reads the token's
author from the contract, finds which stored mint event the chain holds (its receipt carries a
BatchMinted log of this contract covering the token), and hands both to lifecycle.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from authors.services import authors_ensure
from chain import abi
from chain.adapter import GliskChain
from chain.errors import ChainError, ContractRevert
from chain.logs import MalformedLog, decode_batch_minted
from chain.models import MintEvent
from lifecycle.selectors import DisputedToken, tokens_disputed
from lifecycle.services.minting import ChainMint, token_mint_settle

logger = logging.getLogger(__name__)

ACTOR = "watcher"


@dataclass
class DisputeReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    unconfirmed: int = 0
    unreadable: int = 0


def _candidates(chain: GliskChain, token_id: int) -> list[MintEvent]:
    """The stored mint events whose range covers `token_id`."""
    events = MintEvent.objects.filter(
        chain_id=chain.chain_id,
        start_token_id__lte=token_id,
        start_token_id__gt=token_id - abi.MAX_BATCH_SIZE,
    )
    return [e for e in events if e.start_token_id <= token_id < e.start_token_id + e.quantity]


def _covers(chain: GliskChain, receipt: dict[str, Any] | None, token_id: int) -> str | None:
    """The prompt author of this contract's BatchMinted log in `receipt` covering `token_id`."""
    if not receipt or int(str(receipt.get("status", "0x1")), 16) != 1:
        return None
    for log in receipt.get("logs") or []:
        if str(log.get("address", "")).lower() != chain.contract_address.lower() or log.get("removed"):
            continue
        try:
            _, author, start, quantity, _ = decode_batch_minted(log.get("topics") or [], log.get("data", ""))
        except MalformedLog:
            continue
        if start <= token_id < start + quantity:
            return author
    return None


def mint_disputes_settle(*, chain: GliskChain, head: int | None = None, limit: int = 100) -> DisputeReport:
    """Settle the disputed tokens whose mint events are all confirmed; the others wait."""
    report = DisputeReport()
    disputed = tokens_disputed(limit=limit)
    if not disputed:
        return report
    safe = (chain.block_number() if head is None else head) - settings.GLISK.watcher_confirmations
    due: list[tuple[DisputedToken, list[MintEvent]]] = []
    for token in disputed:
        events = _candidates(chain, token.token_id)
        if any(e.block_number > safe for e in events):
            report.unconfirmed += 1
            continue
        due.append((token, events))
    if not due:
        return report
    states = chain.token_states([token.token_id for token, _ in due])
    hashes = sorted({e.tx_hash for _, events in due for e in events})
    receipts = dict(zip(hashes, chain.receipts(hashes), strict=True)) if hashes else {}
    for token, events in due:
        state = states[token.token_id]
        if isinstance(state, ContractRevert):
            outcome = token_mint_settle(token_id=token.token_id, chain_mint=None, actor=ACTOR)
        elif isinstance(state, ChainError):
            report.unreadable += 1  # this token's views fail now; the next pass tries again
            continue
        else:
            author = authors_ensure(wallets=[state.prompt_author])[0][state.prompt_author.lower()]
            held = _held_event(chain, token.token_id, state.prompt_author, events, receipts)
            outcome = token_mint_settle(
                token_id=token.token_id,
                chain_mint=ChainMint(
                    author_id=author.pk,
                    author_wallet=state.prompt_author,
                    mint_event_id=held.pk if held else None,
                    mint_tx_hash=held.tx_hash if held else "",
                ),
                actor=ACTOR,
            )
        report.outcomes[outcome] += 1
    if report.outcomes:
        logger.info("mint.disputes_settled", extra={"outcomes": dict(report.outcomes)})
    return report


def _held_event(
    chain: GliskChain,
    token_id: int,
    chain_author: str,
    events: Sequence[MintEvent],
    receipts: dict[str, dict[str, Any] | None],
) -> MintEvent | None:
    """The stored event the chain holds for the token: its transaction is mined and its receipt
    mints the token with the chain's author."""
    for event in events:
        author = _covers(chain, receipts.get(event.tx_hash), token_id)
        if author is not None and author.lower() == chain_author.lower():
            return event
    return None
