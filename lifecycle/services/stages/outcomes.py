"""How a stage's attempt ends for its token: handed on to the next status, backed off for a
retry, given back uncounted when the provider throttled, or failed with a readable reason; and the
report a stage run returns."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from glisk.core.stages import stage_nudge
from lifecycle.models import Token
from lifecycle.providers.errors import ProviderError
from lifecycle.services.tokens import (
    InvalidStateTransition,
    token_fail,
    token_lease_release,
    tokens_move,
)

logger = logging.getLogger(__name__)

MAX_BACKOFF_WAIT_SECONDS = 30.0


def backoff_seconds(attempt: int, *, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter, at least what the provider asked for, and never more than
    RETRY_BACKOFF_MAX_SECONDS (whatever the provider asked)."""
    c = settings.GLISK
    ceiling = c.retry_backoff_max_seconds
    exponential = min(ceiling, c.retry_backoff_base_seconds * 2 ** min(max(0, attempt - 1), 32))
    delay = exponential * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not crypto)
    # Nothing asked: the backoff alone decides; "forever" (inf) means as long as we ever wait.
    asked = 0.0 if retry_after is None else retry_after if math.isfinite(retry_after) else ceiling
    return min(ceiling, max(delay, asked))


@dataclass
class StageReport:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    throttled: int = 0  # given back uncounted: the provider's account had no budget
    failed: int = 0
    lost: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, other: StageReport) -> None:
        self.claimed += other.claimed
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.throttled += other.throttled
        self.failed += other.failed
        self.lost += other.lost


def stage_hand_on(
    *,
    fields: dict[int, dict[str, Any]],
    worker_id: str,
    actor: str,
    source: str,
    to: str,
    reason: str,
    next_stage: str,
    report: StageReport,
) -> set[int]:
    """Hand a batch's finished tokens on: one lease-checked move of all of them to `to` (each with
    its own `fields`, the last error cleared, due now) and the next stage's nudge, in one
    transaction. A token whose lease was taken over meanwhile counts as lost; its new owner reuses
    what this worker stored. The history names the worker (machine, process) that did the work.
    Returns the tokens handed on."""
    if not fields:
        return set()
    now = timezone.now()
    with transaction.atomic():
        moved = tokens_move(
            fields={
                pk: {**values, "next_attempt_at": now, "last_error": "", "last_error_detail": None}
                for pk, values in fields.items()
            },
            to=to,
            source=source,
            lease_owner=worker_id,
            actor=actor,
            reason=reason,
            detail={"worker": worker_id},
        )
        if moved:
            stage_nudge(stage=next_stage)
    report.succeeded += len(moved)
    report.lost += len(fields) - len(moved)
    return moved


def retry_or_fail(
    *,
    token: Token,
    worker_id: str,
    actor: str,
    error: ProviderError,
    provider: str,
    attempts_field: str,
    attempts: int,
    max_attempts: int,
    report: StageReport,
) -> None:
    """A transient error under the cap backs off (lease given back); anything else fails the token.

    Throttling (a 429, or no room in the account's budget) is the account's state, not the
    token's: the token is given back with no attempt counted, due when the provider said its
    limit resets (at most THROTTLE_WAIT_MAX_SECONDS), whatever its attempts so far.

    A failure to record that (the database failing under it) costs this token only: it is
    logged and counted lost, and the rest of the batch is still handed on; the token's lease
    runs out and the next worker takes it over."""
    with _costs_only(token, report):
        detail = {
            "provider": provider,
            "error_class": error.error_class,
            "status": error.status,
            "transient": error.transient,
            "retry_after": error.retry_after,
        }
        reason = f"{provider}: {error}"
        if error.throttled:
            _throttled(
                token=token,
                worker_id=worker_id,
                actor=actor,
                error=error,
                reason=reason,
                detail=detail,
                report=report,
            )
            return
        if error.transient and attempts < max_attempts:
            delay = backoff_seconds(attempts, retry_after=error.retry_after)
            kept = token_lease_release(
                token_id=token.pk,
                worker_id=worker_id,
                fields={
                    attempts_field: attempts,
                    "next_attempt_at": timezone.now() + timedelta(seconds=delay),
                    "last_error": reason[:500],
                    "last_error_detail": detail,
                },
            )
            if kept:
                report.retried += 1
            else:
                report.lost += 1
            logger.warning(
                "stage.retry_scheduled",
                extra={
                    "token_id": token.pk,
                    "actor": actor,
                    "attempt": attempts,
                    "error_class": error.error_class,
                    "delay": round(delay, 2),
                },
            )
            return
        why = reason if not error.transient else f"{reason} (gave up after {attempts} attempts)"
        try:
            token_fail(
                token_id=token.pk,
                actor=actor,
                reason=why,
                lease_owner=worker_id,
                detail=detail,
                fields={attempts_field: attempts},
            )
            report.failed += 1
        except InvalidStateTransition:  # its lease was taken over, or an operator moved it meanwhile
            report.lost += 1
        logger.error(
            "stage.token_failed",
            extra={"token_id": token.pk, "actor": actor, "error_class": error.error_class},
        )


def _throttled(
    *,
    token: Token,
    worker_id: str,
    actor: str,
    error: ProviderError,
    reason: str,
    detail: dict[str, Any],
    report: StageReport,
) -> None:
    """Give a throttled token back, counting nothing, due when its provider's limit resets."""
    wait = min(settings.GLISK.throttle_wait_max_seconds, max(1.0, error.retry_after or 0.0))
    kept = token_lease_release(
        token_id=token.pk,
        worker_id=worker_id,
        fields={
            "next_attempt_at": timezone.now() + timedelta(seconds=wait),
            "last_error": f"{reason} (throttled: waits {wait:.0f}s, counts no attempt)"[:500],
            "last_error_detail": {**detail, "throttled": True},
        },
    )
    if kept:
        report.throttled += 1
    else:
        report.lost += 1
    logger.info(
        "stage.throttled",
        extra={
            "token_id": token.pk,
            "actor": actor,
            "error_class": error.error_class,
            "delay": round(wait, 2),
        },
    )


@contextlib.contextmanager
def _costs_only(token: Token, report: StageReport) -> Iterator[None]:
    """A database error inside costs `token` only: logged, and the token counted lost."""
    try:
        yield
    except DatabaseError as exc:
        logger.exception(
            "stage.failure_not_recorded", extra={"token_id": token.pk, "error_class": type(exc).__name__}
        )
        report.lost += 1
