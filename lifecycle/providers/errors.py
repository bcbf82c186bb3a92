"""What a provider adapter raises: one type that says whether retrying can help."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any


class ProviderError(Exception):
    """A failed provider call.

    `transient`: retrying later may succeed (timeouts, 429, 5xx, connection errors).
    `retry_after`: seconds the provider asked us to wait, when it said so.
    `error_class`: a short stable label for metrics and the admin (e.g. "http_429", "timeout").
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        error_class: str,
        retry_after: float | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.transient = transient
        self.error_class = error_class
        self.retry_after = retry_after
        self.status = status

    @property
    def throttled(self) -> bool:
        """The account was out of budget (a 429, or our own limiter's turn too far away): the
        account's state, never the token's fault, so it counts no attempt."""
        return self.status == 429 or self.error_class in ("http_429", "throttled")


class ContentPolicyViolation(ProviderError):
    """The model refused the prompt (NSFW / content policy): retry once with the fallback prompt."""

    def __init__(self, message: str, *, external_id: str = ""):
        super().__init__(message, transient=False, error_class="content_policy")
        self.external_id = external_id


def http_error(status: int, message: str, retry_after: float | None = None) -> ProviderError:
    """Classify an HTTP status the same way for every provider."""
    if status == 429:
        return ProviderError(
            message, transient=True, error_class="http_429", retry_after=retry_after, status=status
        )
    if status >= 500:
        return ProviderError(message, transient=True, error_class=f"http_{status}", status=status)
    return ProviderError(message, transient=False, error_class=f"http_{status}", status=status)


RETRY_AFTER_MAX_SECONDS = 86_400.0


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (or an HTTP date: the seconds until then), finite and at most a
    day: a provider's "inf" or "1e9" must neither crash a stage nor park a token for years (the
    stage caps it further at RETRY_BACKOFF_MAX_SECONDS)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return _until_http_date(value)
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX_SECONDS)


def _until_http_date(value: str) -> float | None:
    """`Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`: the seconds from now until then (0 if past)."""
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return min(max(0.0, moment.timestamp() - time.time()), RETRY_AFTER_MAX_SECONDS)


def timeout_error(service: str, seconds: float) -> ProviderError:
    return ProviderError(
        f"{service} did not answer within {seconds:g}s", transient=True, error_class="timeout"
    )


def unreachable_error(service: str, exc: BaseException) -> ProviderError:
    """No URL or host in the message: it may carry a key."""
    return ProviderError(
        f"{service} is unreachable ({type(exc).__name__})", transient=True, error_class="connection"
    )


# "Your rate limit resets in ~30s.", "Expected available in 1 second.", "… in 2 minutes"
_RESETS_IN = re.compile(
    r"(?:resets? in|available in)\s*~?\s*(\d+(?:\.\d+)?)\s*"
    r"(milliseconds?|millis|msecs?|ms|minutes?|mins?|m|hours?|hrs?|h|seconds?|secs?|s)?(?![a-z])",
    re.I,
)


def _unit_seconds(unit: str) -> float:
    unit = unit.lower()
    if unit.startswith(("ms", "milli")):
        return 0.001
    if unit.startswith("h"):
        return 3600.0
    if unit.startswith("m"):
        return 60.0
    return 1.0


def _seconds(value: Any, *, unix_time: bool = False) -> float | None:
    """A delay in seconds (at most a day); with `unix_time`, a value past 1e9 is a moment (a Unix
    time, as some `x-ratelimit-reset` headers give) and its distance from now is returned."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    if unix_time and math.isfinite(seconds) and seconds > 1_000_000_000:
        if seconds > 1_000_000_000_000:  # milliseconds since the epoch
            seconds /= 1000
        seconds = max(0.0, seconds - time.time())
    return min(seconds, RETRY_AFTER_MAX_SECONDS)


def throttle_seconds(headers: Mapping[str, str], body: Any = None) -> float | None:
    """How long a throttled request is told to wait, from whatever the provider said: the
    `Retry-After` header, a `ratelimit-reset` / `x-ratelimit-reset` header (seconds, or a Unix
    time), a `retry_after` field, or a text such as "resets in ~30s". None when it said nothing."""
    headers = {str(key).lower(): str(value) for key, value in headers.items()}
    asked = parse_retry_after(headers.get("retry-after"))
    if asked is not None:
        return asked
    for name in ("ratelimit-reset", "x-ratelimit-reset"):
        reset = _seconds(headers.get(name), unix_time=True)
        if reset is not None:
            return reset
    if isinstance(body, Mapping):
        asked = _seconds(body.get("retry_after"), unix_time=True)
        if asked is not None:
            return asked
        error = body.get("error")
        texts = [
            body.get("detail"),
            body.get("title"),
            *((error.get("details"), error.get("message")) if isinstance(error, Mapping) else (error,)),
        ]
    else:
        texts = [body]
    for text in texts:
        match = _RESETS_IN.search(text) if isinstance(text, str) else None
        if match:
            return min(float(match.group(1)) * _unit_seconds(match.group(2) or "s"), RETRY_AFTER_MAX_SECONDS)
    return None


def throttled_error(message: str, seconds: float | None) -> ProviderError:
    """A 429: transient, counted against no token, with the wait the provider named."""
    return ProviderError(message, transient=True, error_class="http_429", retry_after=seconds, status=429)


# How long one request may wait for its turn in its account's budget before its token is given
# back instead (and taken again when there is budget): stages claim only what the budget admits,
# so a long wait means another machine took the room first.
ADMISSION_WAIT_MAX_SECONDS = 30.0


def admitted(budget: str, *, cost: float = 1.0) -> float:
    """Wait for this request's turn in the shared `budget` (`glisk.core.budgets`); a turn further
    than ADMISSION_WAIT_MAX_SECONDS away is a transient, uncounted `throttled` error."""
    from glisk.core.budgets import BudgetExhausted, budget_acquire

    try:
        return budget_acquire(name=budget, cost=cost, max_wait=ADMISSION_WAIT_MAX_SECONDS)
    except BudgetExhausted as exc:
        raise ProviderError(
            f"the {budget} budget has no room for {exc.wait:.0f}s",
            transient=True,
            error_class="throttled",
            retry_after=exc.wait,
        ) from None


def throttled_by_provider(budget: str, message: str, headers: Mapping[str, str], body: Any) -> ProviderError:
    """A 429 from the provider: the account's shared budget pauses for the time it named (a
    second when it named none), and the request's error says how long."""
    from glisk.core.budgets import budget_throttled

    seconds = throttle_seconds(headers, body)
    budget_throttled(name=budget, seconds=1.0 if seconds is None else seconds)
    return throttled_error(message, seconds)
