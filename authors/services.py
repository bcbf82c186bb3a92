"""Writes to authors."""

from __future__ import annotations

from collections.abc import Iterable

from eth_utils import to_checksum_address

from authors.models import Author
from authors.selectors import authors_by_wallet


def authors_ensure(*, wallets: Iterable[str]) -> tuple[dict[str, Author], int]:
    """The authors for `wallets`, creating unknown ones (with no prompt) race-safely.

    Returns a map from the lower-cased wallet to its `Author`, and how many were new.
    Concurrent callers may insert the same wallet: `ON CONFLICT DO NOTHING` against the
    case-insensitive unique index makes that harmless, and the rows are read back afterwards.
    """
    checksummed = {to_checksum_address(w) for w in wallets}
    if not checksummed:
        return {}, 0
    known = authors_by_wallet(wallets=checksummed)
    missing = sorted(w for w in checksummed if w.lower() not in known)
    if missing:
        Author.objects.bulk_create([Author(wallet_address=w) for w in missing], ignore_conflicts=True)
        known = authors_by_wallet(wallets=checksummed)
    return known, len(missing)
