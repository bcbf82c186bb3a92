"""Reads of what the chain side owns, for the other units."""

from __future__ import annotations

from chain.models import RevealTransaction
from lifecycle.selectors import ready_count


def reveal_pending_count() -> int:
    """Work for the keeper: ready tokens, and reveal transactions still to resolve."""
    return ready_count() + RevealTransaction.objects.filter(status__in=RevealTransaction.ACTIVE).count()
