"""Reads of tokens for the other apps: the stage queues, the keeper's next batch, stuck tokens."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import F, Min, Q
from django.utils import timezone

from lifecycle.models import ACTIVE_STATUSES, STAGE_STATUSES, Token, TokenStatus

STUCK_AFTER = timedelta(minutes=15)


def stuck_q(now: datetime | None = None) -> Q:
    """Tokens whose lease expired, or that have sat in an active stage past STUCK_AFTER."""
    now = now or timezone.now()
    expired_lease = ~Q(claimed_by="") & Q(lease_expires_at__lt=now)
    old_stage = Q(status__in=list(ACTIVE_STATUSES), status_changed_at__lt=now - STUCK_AFTER)
    return expired_lease | old_stage


def oldest_unrevealed_created_at() -> datetime | None:
    """When the oldest token neither revealed nor failed was created (its partial index)."""
    return Token.objects.exclude(status__in=[TokenStatus.REVEALED, TokenStatus.FAILED]).aggregate(
        t=Min("created_at")
    )["t"]


def _due_count(stage: str) -> int:
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    return Token.objects.filter(free, status__in=STAGE_STATUSES[stage], next_attempt_at__lte=now).count()


def image_due_count() -> int:
    """Tokens the image stage could claim now (due, and not held by a live lease)."""
    return _due_count("image")


def ipfs_due_count() -> int:
    """Tokens the IPFS stage could claim now."""
    return _due_count("ipfs")


def ready_count() -> int:
    """Tokens waiting for the keeper, in a reveal transaction or not."""
    return Token.objects.filter(status=TokenStatus.READY).count()


@dataclass(frozen=True)
class RevealCandidate:
    """What the keeper needs of a ready token; plain data, so the keeper cannot write the row."""

    token_id: int
    metadata_cid: str
    author_wallet: str
    ready_since: datetime
    reveal_requested_at: datetime | None


def reveal_queue(*, limit: int) -> list[RevealCandidate]:
    """Ready tokens in no reveal transaction, due now: "reveal now" requests first, then oldest."""
    rows = (
        Token.objects.filter(
            status=TokenStatus.READY,
            next_attempt_at__lte=timezone.now(),
            reveal_transaction=None,
            mint_disputed_at=None,
        )
        .order_by(F("reveal_requested_at").asc(nulls_last=True), "status_changed_at", "token_id")
        .values_list(
            "token_id", "metadata_cid", "author__wallet_address", "status_changed_at", "reveal_requested_at"
        )[:limit]
    )
    return [RevealCandidate(*row) for row in rows]


def reveal_waiting_exists() -> bool:
    """Whether a ready token waits for a reveal transaction (due now or backing off)."""
    return Token.objects.filter(
        status=TokenStatus.READY, reveal_transaction=None, mint_disputed_at=None
    ).exists()


@dataclass(frozen=True)
class DisputedToken:
    token_id: int
    author_wallet: str
    mint_event_id: int | None


def tokens_disputed(*, limit: int = 200) -> list[DisputedToken]:
    """Tokens whose stored mint a source contradicted, oldest dispute first."""
    rows = (
        Token.objects.filter(mint_disputed_at__isnull=False)
        .order_by("mint_disputed_at", "token_id")
        .values_list("token_id", "author__wallet_address", "mint_event_id")[:limit]
    )
    return [DisputedToken(*row) for row in rows]


def tokens_disputed_exist() -> bool:
    return Token.objects.filter(mint_disputed_at__isnull=False).exists()


def token_ids_present(*, up_to: int) -> set[int]:
    """The ids of stored tokens from 1 to `up_to`."""
    return set(Token.objects.filter(token_id__lte=up_to).values_list("token_id", flat=True))


class PageToken(NamedTuple):
    """What an author's token list shows of a token."""

    token_id: int
    status: str
    failed_stage: str
    image_cid: str
    metadata_cid: str
    image_attempts: int
    last_error: str
    created_at: datetime
    reveal_tx_hash: str | None


@dataclass(frozen=True)
class TokenPage:
    tokens: list[PageToken]  # newest first
    total: int  # the author's tokens, all pages


@functools.cache
def _page_sql() -> str:
    def table(model: Any) -> str:
        return connection.ops.quote_name(model._meta.db_table)

    # The joined tables through Token's relations: lifecycle names no other app's models.
    token = table(Token)
    author, reveal = (
        table(Token._meta.get_field(name).related_model) for name in ("author", "reveal_transaction")
    )
    columns = ", ".join(f"t.{connection.ops.quote_name(name)}" for name in PageToken._fields[:-1])
    author_id = connection.ops.quote_name(Token._meta.get_field("author").column)
    return (
        f"SELECT p.*, n.total FROM {author} a"  # noqa: S608 (our names)
        f" CROSS JOIN LATERAL (SELECT count(*) AS total FROM {token} WHERE {author_id} = a.id) n"
        f" LEFT JOIN LATERAL (SELECT {columns}, r.tx_hash FROM {token} t"
        f" LEFT JOIN {reveal} r ON r.id = t.reveal_transaction_id"
        f" WHERE t.{author_id} = a.id ORDER BY t.token_id DESC LIMIT %s OFFSET %s) p ON true"
        " WHERE lower(a.wallet_address) = %s"
    )


def author_token_page(*, wallet: str, offset: int, limit: int) -> TokenPage:
    """One page of the tokens of the author with `wallet` (any letter case), newest first, and
    how many they have in all.

    The frontend polls this every 2 s per collector watching a reveal, so it is one statement
    written out once (the ORM took twice as long to build it as PostgreSQL to run it): only the
    columns a page shows (no metadata JSON, no model instances), the author matched through the
    unique index on their lower-cased wallet, then their tokens through the index on author and
    token id: the page read backwards from it (a popular author's thousands of tokens are not
    all read and sorted for 20), the total counted in it. The author's one row comes back even
    for a page past the end, carrying the total; an unknown wallet gives no row."""
    with connection.cursor() as cursor:
        cursor.execute(_page_sql(), [limit, offset, wallet.lower()])
        rows = cursor.fetchall()
    total = rows[0][-1] if rows else 0
    return TokenPage(tokens=[PageToken(*row[:-1]) for row in rows if row[0] is not None], total=total)


@dataclass(frozen=True)
class RevealNowPreview:
    """What "reveal now" on some tokens would send, for the operator to confirm."""

    will_send: list[int]  # chosen and ready, in no reveal transaction yet
    not_ready: dict[int, str]  # chosen but not ready (refused): id → status
    already_asked: list[int]  # other tokens operators asked to reveal now, sent with them


def reveal_now_preview(*, token_ids: list[int]) -> RevealNowPreview:
    rows = dict(Token.objects.filter(pk__in=token_ids).values_list("pk", "status"))
    free = set(
        Token.objects.filter(pk__in=token_ids, status=TokenStatus.READY, reveal_transaction=None).values_list(
            "pk", flat=True
        )
    )
    asked = Token.objects.filter(
        status=TokenStatus.READY, reveal_transaction=None, reveal_requested_at__isnull=False
    ).exclude(pk__in=token_ids)
    return RevealNowPreview(
        will_send=sorted(free),
        not_ready={t: rows.get(t, "unknown") for t in token_ids if t not in free},
        already_asked=sorted(asked.values_list("pk", flat=True)),
    )
