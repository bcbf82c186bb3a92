"""django-q2 tasks of the authors app."""

from __future__ import annotations

from authors.services import prompt_nonces_prune


def prune_nonces() -> int:
    return prompt_nonces_prune()
