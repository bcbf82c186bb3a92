"""Throttles for prompt updates, counted in the cache every process shares (the database cache)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class PromptClientThrottle(SimpleRateThrottle):
    """Every prompt update request, per client address (behind NUM_PROXIES trusted proxies)."""

    scope = "prompt_client"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PromptWalletThrottle(SimpleRateThrottle):
    """Accepted-signature updates per wallet. Checked only once the signature verifies, so nobody
    can use up another wallet's allowance by sending requests in its name."""

    scope = "prompt_wallet"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        wallet = getattr(view, "verified_wallet", None)
        if not wallet:
            return None
        return self.cache_format % {"scope": self.scope, "ident": str(wallet).lower()}
