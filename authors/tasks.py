"""django-q2 tasks of the authors app."""

from __future__ import annotations

from authors.services import prompt_nonces_prune
from authors.social import x_link_requests_prune


def prune_nonces() -> int:
    """Expired prompt nonces and X sign-ins (anyone may start either)."""
    return prompt_nonces_prune() + x_link_requests_prune()
