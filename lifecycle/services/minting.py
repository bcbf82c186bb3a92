"""Tokens come into being here: minted batches that ingestion found, and tokens that recovery
found on chain. Every caller (webhook, log watcher, recover_tokens) goes through these."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from glisk.core.stages import stage_nudge
from lifecycle.models import Token, TokenStatus, TokenTransition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MintedBatch:
    """The tokens of one stored mint event."""

    mint_event_id: int
    author_id: int
    token_ids: range
    tx_hash: str


@dataclass
class Registered:
    new_token_ids: list[int] = field(default_factory=list)
    existing: int = 0


def tokens_register_minted(*, batches: Sequence[MintedBatch], actor: str) -> Registered:
    """Create the tokens of `batches` that do not exist yet, each `detected` with its first history
    row; existing ones are counted, never an error. Nudges the image stage in the same
    transaction when any token is new."""
    result = Registered()
    if not batches:
        return result
    now = timezone.now()
    with transaction.atomic():
        wanted = [i for batch in batches for i in batch.token_ids]
        existing = set(Token.objects.filter(token_id__in=wanted).values_list("token_id", flat=True))
        fresh = [
            (batch, Token(token_id=i, author_id=batch.author_id, mint_event_id=batch.mint_event_id))
            for batch in batches
            for i in batch.token_ids
            if i not in existing
        ]
        # ignore_conflicts: recovery may insert the same id concurrently.
        Token.objects.bulk_create([token for _, token in fresh], ignore_conflicts=True)
        TokenTransition.objects.bulk_create(
            TokenTransition(
                token_id=token.token_id,
                from_status="",
                to_status=TokenStatus.DETECTED,
                actor=actor,
                reason=f"minted in {batch.tx_hash}",
                created_at=now,
            )
            for batch, token in fresh
        )
        result.new_token_ids = [token.token_id for _, token in fresh]
        result.existing = len(wanted) - len(fresh)
        if fresh:
            stage_nudge(stage="image")
    return result


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
    metadata CID, the others `detected` (and the image stage is nudged). Each token in a savepoint,
    so one that ingestion stored meanwhile never undoes the others."""
    result = Recovered()
    if not found:
        return result
    now = timezone.now()
    with transaction.atomic():
        for item in found:
            token = Token(
                token_id=item.token_id,
                author_id=item.author_id,
                status=TokenStatus.REVEALED if item.revealed else TokenStatus.DETECTED,
                metadata_cid=item.metadata_cid if item.revealed else "",
                revealed_at=now if item.revealed else None,
            )
            try:
                with transaction.atomic():
                    token.save(force_insert=True)
                    TokenTransition.objects.create(
                        token=token,
                        from_status="",
                        to_status=token.status,
                        actor=actor,
                        reason="found on chain by recover_tokens"
                        + (" (already revealed)" if item.revealed else ""),
                        detail={"token_uri": item.token_uri} if item.revealed else None,
                        created_at=now,
                    )
            except IntegrityError:
                result.already_present += 1  # ingested meanwhile by the webhook or the watcher
                continue
            result.created += 1
            result.created_revealed += int(item.revealed)
        if result.created > result.created_revealed:
            stage_nudge(stage="image")
    return result
