"""What a provider adapter raises: one type that says whether retrying can help."""

from __future__ import annotations

import math


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
    """`Retry-After` in seconds (delta form; HTTP dates are rare here and ignored), finite and at
    most a day: a provider's "inf" or "1e9" must neither crash a stage nor park a token for years
    (the stage caps it further at RETRY_BACKOFF_MAX_SECONDS)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX_SECONDS)


def timeout_error(service: str, seconds: float) -> ProviderError:
    return ProviderError(
        f"{service} did not answer within {seconds:g}s", transient=True, error_class="timeout"
    )


def unreachable_error(service: str, exc: BaseException) -> ProviderError:
    """No URL or host in the message: it may carry a key."""
    return ProviderError(
        f"{service} is unreachable ({type(exc).__name__})", transient=True, error_class="connection"
    )
