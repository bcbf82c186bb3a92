"""Reads of authors."""

from __future__ import annotations

from django.db.models.functions import Lower

from authors.models import Author


def author_get_by_wallet(*, wallet: str) -> Author | None:
    return (
        Author.objects.annotate(wallet_lower=Lower("wallet_address"))
        .filter(wallet_lower=wallet.lower())
        .first()
    )
