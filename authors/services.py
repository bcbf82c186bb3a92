"""Writes to authors."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models.functions import Lower
from eth_utils import to_checksum_address

from authors.models import Author


def authors_ensure(*, wallets: Iterable[str]) -> tuple[dict[str, Author], int]:
    """The authors for `wallets`, creating unknown ones (with no prompt) race-safely.

    Returns a map from the lower-cased wallet to its `Author`, and how many were new.
    Concurrent callers may insert the same wallet: `ON CONFLICT DO NOTHING` against the
    case-insensitive unique index makes that harmless, and the rows are read back afterwards.
    """
    checksummed = {to_checksum_address(w) for w in wallets}
    if not checksummed:
        return {}, 0
    lowered = [w.lower() for w in checksummed]
    known = _by_lower_wallet(lowered)
    missing = sorted(w for w in checksummed if w.lower() not in known)
    if missing:
        Author.objects.bulk_create([Author(wallet_address=w) for w in missing], ignore_conflicts=True)
        known = _by_lower_wallet(lowered)
    return known, len(missing)


def _by_lower_wallet(lowered: list[str]) -> dict[str, Author]:
    found = Author.objects.annotate(wallet_lower=Lower("wallet_address")).filter(wallet_lower__in=lowered)
    return {a.wallet_address.lower(): a for a in found}
