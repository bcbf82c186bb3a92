"""Tokens come into being here: minted batches that ingestion found, and tokens that recovery
found on chain. Every caller (webhook, log watcher, recover_tokens) goes through these.

A mint log that names another author or transaction for a token already stored (a reorg, a
replayed old delivery) marks the token *disputed*; so does the keeper when the chain's author
differs. A disputed token is never revealed. Once the blocks involved have the watcher's
confirmations, the watcher re-reads the chain and `token_mint_settle` takes its word: the
chain's author and mint, recorded in the timeline, and a token not yet revealed restarts from
`detected` when its author (hence its prompt and metadata) changed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from glisk.core.bulk import insert_from_arrays
from glisk.core.stages import stage_nudge
from lifecycle.models import Token, TokenStatus, TokenTransition
from lifecycle.services.tokens import FRESH_IMAGE, FRESH_PINS, token_transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MintedBatch:
    """The tokens of one stored mint event."""

    mint_event_id: int
    author_id: int
    token_ids: range
    tx_hash: str
    author_wallet: str = ""


@dataclass
class Registered:
    new_token_ids: list[int] = field(default_factory=list)
    existing: int = 0
    disputed: list[int] = field(default_factory=list)  # newly disputed by this call


def tokens_register_minted(*, batches: Sequence[MintedBatch], actor: str) -> Registered:
    """Create the tokens of `batches` that do not exist yet, each `detected` with its first history
    row; existing ones are counted, never an error. An existing token the batch contradicts
    (another author or mint event) is disputed (see the module docstring); one recovery stored
    without its mint event gets it. Nudges the image stage in the same transaction when any
    token is new."""
    result = Registered()
    if not batches:
        return result
    now = timezone.now()
    with transaction.atomic(savepoint=False):  # all or nothing, in the caller's transaction if any
        wanted = [i for batch in batches for i in batch.token_ids]
        # A token two logs of this call both name is made by the first (in the caller's order).
        claimed: set[int] = set()
        fresh = []
        for batch in batches:
            for i in batch.token_ids:
                if i not in claimed:
                    claimed.add(i)
                    fresh.append((batch, i))
        # Insert first, read after: stored rows (before, or by a concurrent writer such as
        # recovery) are skipped, and only the rows this statement inserted come back and get a
        # history row here. A delivery of new tokens then reads nothing back. In token order, the
        # same for every writer, so two that insert the same tokens cannot wait for each other.
        fresh.sort(key=lambda pair: pair[1])
        inserted = set(
            insert_from_arrays(
                Token,
                each={
                    "token_id": [i for _, i in fresh],
                    "author_id": [batch.author_id for batch, _ in fresh],
                    "mint_event_id": [batch.mint_event_id for batch, _ in fresh],
                },
                same={"status_changed_at": now},
                skip_existing=True,
            )
        )
        fresh = [(batch, i) for batch, i in fresh if i in inserted]
        insert_from_arrays(
            TokenTransition,
            each={
                "token_id": [i for _, i in fresh],
                "reason": [f"minted in {batch.tx_hash}" for batch, _ in fresh],
            },
            same={"from_status": "", "to_status": TokenStatus.DETECTED, "actor": actor, "created_at": now},
        )
        # Compared with every log that names them: the tokens stored before this call, and
        # those that another log of this call names too (the first log made them).
        named_twice = {i for i, count in Counter(wanted).items() if count > 1}
        compare = (claimed - inserted) | (named_twice & inserted)
        if compare:
            _reconcile_stored(batches, compare, actor, now, result)
        result.new_token_ids = [i for _, i in fresh]
        result.existing = len(set(wanted)) - len(fresh)  # stored before, or by a concurrent writer
        if fresh:
            stage_nudge(stage="image")
    return result


def _reconcile_stored(
    batches: Sequence[MintedBatch], token_ids: Iterable[int], actor: str, now: datetime, result: Registered
) -> None:
    """Compare the stored tokens among `token_ids` with every batch that names them, in order:
    dispute a contradiction, and link a token recovery stored without its mint event to the first
    batch that agrees (a later batch then meets that link).

    What to do is decided from a plain read; the tokens it touches are then locked in token
    order, in one statement that reads them again, and decided once more from what the lock
    holds (a concurrent writer may have linked or disputed them meanwhile) before anything is
    written. Two writers whose logs contradict the same tokens in other chain orders (two forks)
    then take turns instead of each holding a token the other wants; the common case (nothing to
    dispute or link) takes no lock."""
    stored = {
        row[0]: row[1:]
        for row in Token.objects.filter(token_id__in=list(token_ids)).values_list(
            "token_id", "author_id", "mint_event_id", "mint_disputed_at"
        )
    }
    plan = _reconcile_plan(batches, dict(stored), now)
    touched = sorted({token_id for _, disputes, links in plan for token_id in (*disputes, *links)})
    if touched:
        locked = (
            Token.objects.select_for_update(no_key=True)
            .filter(pk__in=touched)
            .order_by("pk")
            .values_list("token_id", "author_id", "mint_event_id", "mint_disputed_at")
        )
        stored.update((row[0], row[1:]) for row in locked)
        plan = _reconcile_plan(batches, dict(stored), now)
    for batch, disputes, links in plan:
        for token_id in disputes:
            if token_mint_dispute(token_id=token_id, actor=actor, reason=_contradicted_by(batch), now=now):
                result.disputed.append(token_id)
        if links:  # one statement for the batch, however many tokens recovery stored
            Token.objects.filter(pk__in=links, mint_event=None, author_id=batch.author_id).update(
                mint_event_id=batch.mint_event_id
            )


def _reconcile_plan(
    batches: Sequence[MintedBatch], stored: dict[int, tuple[Any, ...]], now: datetime
) -> list[tuple[MintedBatch, list[int], list[int]]]:
    """For each batch in order, the stored tokens it disputes and those it links (`stored`, by
    token id: author, mint event, disputed at; updated as the batches act on it). The first log
    that agrees with a token stored without its mint event links it; the first that contradicts
    a token disputes it, once."""
    plan = []
    for batch in batches:
        disputes: list[int] = []
        links: list[int] = []
        for token_id in batch.token_ids:
            if token_id not in stored:
                continue
            author_id, mint_event_id, disputed_at = stored[token_id]
            if author_id == batch.author_id and mint_event_id in (None, batch.mint_event_id):
                if mint_event_id is None:  # recovered from the chain: now we know its mint
                    links.append(token_id)
                    stored[token_id] = (author_id, batch.mint_event_id, disputed_at)
            elif disputed_at is None:
                disputes.append(token_id)
                stored[token_id] = (author_id, mint_event_id, now)
        if disputes or links:
            plan.append((batch, disputes, links))
    return plan


def _contradicted_by(batch: MintedBatch) -> str:
    return (
        f"contradicted by the mint log in {batch.tx_hash} (author "
        f"{batch.author_wallet or f'#{batch.author_id}'}): not revealed until the chain is re-read "
        "with confirmations"
    )


def token_mint_dispute(*, token_id: int, actor: str, reason: str, now: datetime | None = None) -> bool:
    """Mark the token's mint as contradicted (idempotent): it leaves the reveal queue, the reason
    goes into its timeline and `last_error`. Returns whether it was newly disputed."""
    now = now or timezone.now()
    with transaction.atomic():
        status = (
            Token.objects.select_for_update(no_key=True)  # its UPDATE changes no key
            .filter(pk=token_id, mint_disputed_at=None)
            .values_list("status", flat=True)
            .first()
        )
        if status is None:
            return False
        Token.objects.filter(pk=token_id).update(
            mint_disputed_at=now, last_error=reason[:500], updated_at=now
        )
        _note(token_id, status, actor, reason, {"mint_disputed": True}, now)
    logger.warning("token.mint_disputed", extra={"token_id": token_id, "actor": actor})
    return True


def _note(token_id: int, status: str, actor: str, reason: str, detail: dict[str, Any], now: datetime) -> None:
    """A timeline entry that changes no status."""
    TokenTransition.objects.create(
        token_id=token_id,
        from_status=status,
        to_status=status,
        actor=actor[:128],
        reason=reason[:500],
        detail=detail,
        created_at=now,
    )


# The timeline's words for a token whose mint changed author after its reveal (a deep reorg):
# nothing can change on chain, and the audit reports it.
REVEALED_WITH_EARLIER_AUTHOR = "already revealed with the earlier author's prompt"


@dataclass(frozen=True)
class ChainMint:
    """What the chain says of a disputed token, read with the watcher's confirmations."""

    author_id: int
    author_wallet: str
    mint_event_id: int | None  # the stored event the chain holds; None when none of them is
    mint_tx_hash: str = ""


def token_mint_settle(*, token_id: int, chain_mint: ChainMint | None, actor: str) -> str:
    """Take the chain's word on a disputed token, under its row lock. `chain_mint` None: the
    chain has no such token (the keeper fails it as not on chain). Returns what happened:
    "not disputed", "agrees", "absent", "waiting" (its reveal transaction is in flight),
    "corrected" (same author, or already revealed) or "restarted"."""
    now = timezone.now()
    with transaction.atomic():
        token = Token.objects.select_for_update(of=("self",)).filter(pk=token_id).first()
        if token is None or token.mint_disputed_at is None:
            return "not disputed"
        settled: dict[str, Any] = {"mint_disputed_at": None, "updated_at": now}
        if token.last_error.startswith(("contradicted by", "author mismatch")):
            settled["last_error"] = ""
        if chain_mint is None:
            Token.objects.filter(pk=token_id).update(**settled)
            _note(token_id, token.status, actor, "re-read the chain: it has no such token", {}, now)
            return "absent"
        same_author = token.author_id == chain_mint.author_id
        mint_event_id = chain_mint.mint_event_id
        if same_author and (mint_event_id is None or token.mint_event_id == mint_event_id):
            Token.objects.filter(pk=token_id).update(**settled)
            _note(token_id, token.status, actor, "re-read the chain: it agrees with the stored mint", {}, now)
            return "agrees"
        if token.reveal_transaction_id is not None and token.status != TokenStatus.REVEALED:
            return "waiting"  # a reveal is in flight: settle once it is confirmed or released
        correction = {"author_id": chain_mint.author_id, "mint_event_id": mint_event_id}
        detail = {
            "previous_author_id": token.author_id,
            "previous_mint_event_id": token.mint_event_id,
            "chain_author": chain_mint.author_wallet,
            "chain_mint_tx": chain_mint.mint_tx_hash,
        }
        what = (
            f"author {chain_mint.author_wallet}"
            if not same_author
            else f"mint transaction {chain_mint.mint_tx_hash or 'unknown'}"
        )
        if same_author or token.status == TokenStatus.REVEALED:
            # Same author: the image and metadata stay right. Revealed: nothing can change on
            # chain any more; the record says so.
            Token.objects.filter(pk=token_id).update(**settled, **correction)
            reason = f"mint corrected from the chain: {what}"
            if token.status == TokenStatus.REVEALED and not same_author:
                reason += f" ({REVEALED_WITH_EARLIER_AUTHOR})"
            _note(token_id, token.status, actor, reason, detail, now)
            return "corrected"
        reason = f"mint corrected from the chain: {what}; restarted for the new author's prompt"
        if token.status == TokenStatus.DETECTED:
            # A worker may hold it with the old author loaded: its lease goes, so its later
            # lease-checked writes match nothing and the token is claimed afresh.
            Token.objects.filter(pk=token_id).update(
                **settled,
                **correction,
                next_attempt_at=now,
                claimed_by="",
                lease_expires_at=None,
                prompt_text="",
            )
            _note(token_id, token.status, actor, reason, detail, now)
        else:
            token_transition(
                token_id=token_id,
                to=TokenStatus.DETECTED,
                actor=actor,
                reason=reason,
                sources=[token.status],
                detail=detail,
                fields={
                    **FRESH_IMAGE,
                    **FRESH_PINS,
                    **settled,
                    **correction,
                    "reveal_attempts": 0,
                    "last_error": "",
                    "last_error_detail": None,
                    "next_attempt_at": now,
                },
            )
        stage_nudge(stage="image")
    logger.warning("token.mint_corrected", extra={"token_id": token_id, "actor": actor})
    return "restarted"


@dataclass(frozen=True)
class FoundOnChain:
    """A token recovery read from the chain."""

    token_id: int
    author_id: int
    revealed: bool
    metadata_cid: str
    token_uri: str


@dataclass
class Recovered:
    created: int = 0
    created_revealed: int = 0
    already_present: int = 0


def tokens_register_recovered(*, found: Sequence[FoundOnChain], actor: str = "recovery") -> Recovered:
    """Create tokens the chain has and the database lacks: revealed ones as `revealed` with their
    metadata CID, the others `detected` (and the image stage is nudged). One multi-row insert that
    skips ids stored meanwhile (by the webhook or the watcher: theirs stay as they are), then the
    rows this call inserted, and only those, get their history row (one multi-row insert too)."""
    result = Recovered()
    if not found:
        return result
    now = timezone.now()
    by_id = {item.token_id: item for item in found}
    with transaction.atomic():
        revealed = [by_id[i].revealed for i in by_id]
        # Ids stored meanwhile (by the webhook or the watcher) are skipped and keep theirs; only
        # the rows this statement inserted come back, and only they get a history row.
        created = insert_from_arrays(
            Token,
            each={
                "token_id": list(by_id),
                "author_id": [item.author_id for item in by_id.values()],
                "status": [TokenStatus.REVEALED if r else TokenStatus.DETECTED for r in revealed],
                "metadata_cid": [item.metadata_cid if item.revealed else "" for item in by_id.values()],
                "revealed_at": [now if r else None for r in revealed],
            },
            same={"status_changed_at": now},
            skip_existing=True,
        )
        created.sort()
        insert_from_arrays(
            TokenTransition,
            each={
                "token_id": created,
                "to_status": [
                    TokenStatus.REVEALED if by_id[i].revealed else TokenStatus.DETECTED for i in created
                ],
                "reason": [
                    "found on chain by recover_tokens" + (" (already revealed)" if by_id[i].revealed else "")
                    for i in created
                ],
                "detail": [{"token_uri": by_id[i].token_uri} if by_id[i].revealed else None for i in created],
            },
            same={"from_status": "", "actor": actor, "created_at": now},
        )
        result.created = len(created)
        result.created_revealed = sum(1 for token_id in created if by_id[token_id].revealed)
        result.already_present = len(by_id) - len(created)
        if result.created > result.created_revealed:
            stage_nudge(stage="image")
    return result
