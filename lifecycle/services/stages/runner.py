"""What every stage shares: claim a batch, work on each token outside any transaction, record
each attempt as a row, and on a provider error either back off or fail the token."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Model
from django.utils import timezone

from glisk.core.stages import stage_nudge, stage_waiting
from lifecycle.models import STAGE_STATUSES, AttemptOutcome, Token
from lifecycle.providers.errors import ContentPolicyViolation, ProviderError
from lifecycle.services.tokens import (
    InvalidStateTransition,
    LeaseLost,
    token_claim,
    token_fail,
    token_lease_held,
    token_lease_release,
    token_leases_renew,
    token_transition,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg", "image/gif": "gif"}
MAX_BACKOFF_WAIT_SECONDS = 30.0
YIELD_TO = "reveal"  # the stage a stage task makes way for between batches
YIELD_AFTER_SECONDS = 2.0  # how long its task may wait before that (a free worker takes it at once)


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
    failed: int = 0
    lost: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, other: StageReport) -> None:
        self.claimed += other.claimed
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.failed += other.failed
        self.lost += other.lost


def _outcome_of(error: ProviderError) -> str:
    if isinstance(error, ContentPolicyViolation):
        return AttemptOutcome.CONTENT_POLICY
    return AttemptOutcome.TRANSIENT_ERROR if error.transient else AttemptOutcome.PERMANENT_ERROR


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def _without_urls(text: str) -> str:
    """An exception's text without URLs: they may carry keys, and this text reaches operators and
    the public token list (its generation_error)."""
    return _URL.sub("<url>", text)


def attempt_recorded(
    model: type[Model],
    *,
    started_row: dict[str, Any],
    call: Callable[[Any], T],
    succeeded: Callable[[T], dict[str, Any]],
    failed: Callable[[ProviderError], dict[str, Any]] | None = None,
    row: Model | None = None,
) -> T:
    """Run one provider `call(row)` as an attempt row of `model` (`ImageJob`, `IpfsRecord`): the
    row is written before the call, so a crash mid-call leaves a trace (and whatever the call
    records on it, such as a prediction to resume), and finished with the outcome, the duration
    and what `succeeded` (or `failed`) says about the result. `row`: an earlier attempt's row that
    this call takes over (its worker died)."""
    if row is None:
        row = model._default_manager.create(**started_row)
    started = time.monotonic()

    def finish(**values: Any) -> None:
        values.update(duration_ms=int((time.monotonic() - started) * 1000), finished_at=timezone.now())
        model._default_manager.filter(pk=row.pk).update(**values)

    try:
        result = call(row)
    except ProviderError as exc:
        finish(
            outcome=_outcome_of(exc),
            error=str(exc)[:2000],
            error_class=exc.error_class,
            **(failed(exc) if failed else {}),
        )
        raise
    except Exception as exc:
        # Not the provider's answer (a full disk, a client library's own exception): recorded and
        # counted like a transient provider error, so it backs off and fails at the cap instead
        # of being paid for again at every lease expiry.
        logger.exception("stage.unexpected_error", extra={"error_class": type(exc).__name__})
        # The token's last error (which the public token list shows) names the class only; the
        # attempt row, which only operators see, keeps the message without URLs.
        error = ProviderError(
            f"unexpected {type(exc).__name__}",
            transient=True,
            error_class=f"unexpected_{type(exc).__name__}"[:64],
        )
        detail = f"{error}: {_without_urls(str(exc))[:1000]}"
        finish(outcome=AttemptOutcome.TRANSIENT_ERROR, error=detail, error_class=error.error_class)
        raise error from exc
    finish(outcome=AttemptOutcome.SUCCEEDED, **succeeded(result))
    return result


HANDED_ON = {"last_error": "", "last_error_detail": None}


def stage_finish(
    *,
    token: Token,
    worker_id: str,
    actor: str,
    source: str,
    to: str,
    reason: str,
    fields: dict[str, Any],
    next_stage: str,
    report: StageReport,
) -> None:
    """Hand a token on: the lease-checked move to `to` (clearing the last error, due now) and the
    next stage's nudge in one transaction. A lease taken over meanwhile counts as lost; the new
    owner reuses what this worker stored. The history names the worker (machine, process) that
    did the stage's work."""
    try:
        with transaction.atomic():
            token_transition(
                token_id=token.pk,
                to=to,
                actor=actor,
                reason=reason,
                sources=[source],
                lease_owner=worker_id,
                detail={"worker": worker_id},
                fields={
                    **fields,
                    "next_attempt_at": timezone.now(),
                    "last_error": "",
                    "last_error_detail": None,
                },
            )
            stage_nudge(stage=next_stage)
    except LeaseLost:
        report.lost += 1
        return
    report.succeeded += 1


def lease_still_ours(token: Token, worker_id: str) -> None:
    """Before paying a provider: a worker whose lease was taken over stops here (`LeaseLost`)."""
    if not token_lease_held(token_id=token.pk, worker_id=worker_id):
        raise LeaseLost(
            token_id=token.pk, current=token.status, wanted=token.status, allowed_from=[token.status]
        )


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
    """A transient error under the cap backs off (lease given back); anything else fails the token."""
    detail = {
        "provider": provider,
        "error_class": error.error_class,
        "status": error.status,
        "transient": error.transient,
        "retry_after": error.retry_after,
    }
    reason = f"{provider}: {error}"
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
    except LeaseLost:
        report.lost += 1
    logger.error(
        "stage.token_failed", extra={"token_id": token.pk, "actor": actor, "error_class": error.error_class}
    )


StageWork = Callable[[Token, str, StageReport], None]


@contextlib.contextmanager
def lease_heartbeat(*, worker_id: str, lease_seconds: int) -> Iterator[None]:
    """Renew the worker's leases every third of a lease while its batch is worked on.

    Leases can then be short: a worker that dies stops renewing, and its tokens are claimable
    again within one lease (STAGE_LEASE_SECONDS) instead of a long fixed one, while a slow batch
    that outlives a lease is not taken over and paid for twice.
    """
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(lease_seconds / 3):
                try:
                    token_leases_renew(worker_id=worker_id, lease_seconds=lease_seconds)
                except DatabaseError as exc:
                    # A dropped connection stays dropped in a thread: close it, so that the next
                    # beat connects afresh (a restart or failover must not expire the batch).
                    logger.warning("stage.heartbeat_failed", extra={"error_class": type(exc).__name__})
                    connections.close_all()  # this thread's connection only
        finally:
            connections.close_all()  # this thread's connection only

    thread = threading.Thread(target=beat, name=f"lease-heartbeat-{worker_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _next_due_in(statuses: tuple[str, ...]) -> float | None:
    """Seconds until the next unleased token of these statuses is due, or None."""
    now = timezone.now()
    upcoming = (
        Token.objects.filter(status__in=statuses, claimed_by="")
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return None if upcoming is None else max(0.0, (upcoming - now).total_seconds())


def run_stage(
    *,
    stage: str,
    worker_id: str,
    work: StageWork,
    max_concurrency: int,
    budget_seconds: float,
    batch_size: int,
) -> StageReport:
    """Claim and work batches of `stage`'s due tokens until none is due soon or the budget ends."""
    statuses = STAGE_STATUSES[stage]
    report = StageReport()
    deadline = time.monotonic() + budget_seconds
    lease = settings.GLISK.stage_lease_seconds
    while time.monotonic() < deadline:
        if report.claimed and stage_waiting(stage=YIELD_TO, longer_than=YIELD_AFTER_SECONDS):
            # The keeper's task has waited for a worker while every worker was busy with stages:
            # hand this one back (the next task of this stage carries on) so a due reveal goes out.
            stage_nudge(stage=stage)
            report.details.append(f"yielded to {YIELD_TO}")
            break
        claim = token_claim(statuses=statuses, worker_id=worker_id, limit=batch_size, lease_seconds=lease)
        if not claim.tokens:
            # Tokens backing off after a transient error would otherwise wait for the sweeper
            # (a minute): wait here for the next one that is due soon, holding no lock.
            wait = _next_due_in(statuses)
            if wait is None or wait > MAX_BACKOFF_WAIT_SECONDS or time.monotonic() + wait > deadline:
                break
            time.sleep(max(0.05, wait))
            continue
        if len(claim.tokens) == batch_size:
            # A backlog: ask for one more worker on this stage (debounced, so it fans out gradually).
            stage_nudge(stage=stage)
        report.claimed += len(claim.tokens)
        tokens = Token.objects.select_related("author").in_bulk(claim.ids)
        concurrency = min(len(claim.ids), max_concurrency)
        with lease_heartbeat(worker_id=worker_id, lease_seconds=lease):
            if concurrency <= 1:
                for token_id in claim.ids:
                    report.add(_work_one(work, tokens[token_id], worker_id))
            else:
                # Provider calls wait on the network: a claimed batch is worked on concurrently.
                # Each thread uses (and closes) its own database connection.
                with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"{stage}-stage") as pool:
                    one_token = functools.partial(_work_one, work, worker_id=worker_id, own_connection=True)
                    for one in pool.map(one_token, [tokens[t] for t in claim.ids]):
                        report.add(one)
    return report


def _work_one(work: StageWork, token: Token, worker_id: str, *, own_connection: bool = False) -> StageReport:
    report = StageReport()
    try:
        work(token, worker_id, report)
    except InvalidStateTransition:
        # The token moved away meanwhile (an operator's action, another worker after our lease
        # expired): not ours any more; the rest of the batch goes on.
        report.lost += 1
    except Exception as exc:
        # Anything else for one token (a database error in its transition) must not end the batch
        # or hold the token for a whole lease: give it back, due after the maximum backoff.
        logger.exception("stage.token_error", extra={"token_id": token.pk, "error_class": type(exc).__name__})
        with contextlib.suppress(DatabaseError):  # the database itself may be what failed
            token_lease_release(
                token_id=token.pk,
                worker_id=worker_id,
                fields={
                    "last_error": f"unexpected {type(exc).__name__} in the stage; retried later"[:500],
                    "next_attempt_at": timezone.now()
                    + timedelta(seconds=settings.GLISK.retry_backoff_max_seconds),
                },
            )
        report.lost += 1
    finally:
        if own_connection:
            connections.close_all()  # this thread's connections only
    return report


def concurrency_for(provider: object) -> int:
    """Threads only help providers that wait on the network; a local one is CPU-bound."""
    return settings.GLISK.stage_concurrency if getattr(provider, "network_bound", False) else 1
