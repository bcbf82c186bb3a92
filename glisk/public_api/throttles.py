"""Throttles for prompt updates, counted in the cache every process shares (the database cache)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.db import transaction
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from glisk.core.clients import throttle_ident
from glisk.core.state import advisory_xact_lock


class AtomicRateThrottle(SimpleRateThrottle):
    """DRF's throttle reads the request history and writes it back: concurrent requests would all
    read the old count. Here each key's read and write happen under a transaction-level lock.
    Clients are counted by `throttle_ident` (an IPv6 client by its /64)."""

    def get_ident(self, request: Request) -> str:
        return throttle_ident(super().get_ident(request))

    def allow_request(self, request: Request, view: Any) -> bool:
        key = self.get_cache_key(request, view) if self.rate is not None else None
        if key is None:
            return True
        with transaction.atomic():
            advisory_xact_lock(f"throttle:{key}")
            return super().allow_request(request, view)


class PromptClientThrottle(AtomicRateThrottle):
    """Every prompt update request, per client address (behind NUM_PROXIES trusted proxies)."""

    scope = "prompt_client"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PromptWalletThrottle(AtomicRateThrottle):
    """Accepted-signature updates per wallet. Checked only once the signature verifies, so nobody
    can use up another wallet's allowance by sending requests in its name. The static message's
    updates have an allowance of their own: a captured static signature can be replayed by anyone,
    and its replays must not use up what the owner's bound (nonce) updates need."""

    scope = "prompt_wallet"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        wallet = getattr(view, "verified_wallet", None)
        if not wallet:
            return None
        ident = str(wallet).lower()
        if getattr(view, "verified_form", "") == "static":
            # Per client too: anyone who once saw a static signature can replay it from anywhere,
            # and their replays must not spend the allowance of the owner's own browser.
            ident += f":static:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SocialClientThrottle(AtomicRateThrottle):
    """Requests to link an X or Farcaster account, per client address."""

    scope = "social_client"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


_WITH_PORT = re.compile(r"^\[?(?P<host>[0-9A-Fa-f:.]+?)\]?:(?P<port>\d{1,5})$")


def client_address(request: Request | Any) -> str | None:
    """The client's IP address as an address column can hold it, or None: a proxy may forward
    `203.0.113.5:41000`, `[2001:db8::1]:443` or `unknown`, and the column refused those (a 500
    after the signature had been checked and the throttle counted)."""
    # DRF's reading of the client (REMOTE_ADDR, or X-Forwarded-For behind NUM_PROXIES), before
    # throttle_ident folds an IPv6 address into its /64.
    ident = str(BaseThrottle().get_ident(request) or "").strip()
    for candidate in (ident, m.group("host") if (m := _WITH_PORT.match(ident)) else ""):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None
