"""Reads of authors."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Lower

from authors.models import Author


def authors_by_wallet(*, wallets: Iterable[str]) -> dict[str, Author]:
    """The authors of `wallets`, matched case-insensitively, keyed by the lower-cased wallet."""
    lowered = {w.lower() for w in wallets}
    if not lowered:
        return {}
    found = Author.objects.annotate(wallet_lower=Lower("wallet_address")).filter(wallet_lower__in=lowered)
    return {a.wallet_address.lower(): a for a in found}


def author_get_by_wallet(*, wallet: str) -> Author | None:
    return authors_by_wallet(wallets=[wallet]).get(wallet.lower())


def authors_with_token_counts(*, with_tokens_only: bool = False) -> QuerySet[Author]:
    """Authors annotated with how many tokens name them: `tokens_total`, `tokens_revealed`,
    `tokens_failed` (tokens are lifecycle's; their status values are its). `with_tokens_only`:
    the leaderboard, authors with at least one token, most tokens first, then by wallet."""
    authors = Author.objects.annotate(
        tokens_total=Count("tokens"),
        tokens_revealed=Count("tokens", filter=Q(tokens__status="revealed")),
        tokens_failed=Count("tokens", filter=Q(tokens__status="failed")),
    )
    if with_tokens_only:
        # Ties by the address in lower case: a checksummed address mixes cases, and the
        # database's collation would otherwise decide the order.
        return authors.filter(tokens_total__gt=0).order_by("-tokens_total", Lower("wallet_address"))
    return authors
