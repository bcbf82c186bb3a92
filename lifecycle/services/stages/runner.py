"""What every stage shares: claim a batch, work on each token outside any transaction, record
each attempt as a row, and on a provider error either back off or fail the token."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db.models import Q
from django.utils import timezone

from glisk.core.stages import stage_nudge, stage_waiting
from lifecycle.models import STAGE_STATUSES, Token
from lifecycle.providers.errors import ProviderError
from lifecycle.services.stages.outcomes import (
    MAX_BACKOFF_WAIT_SECONDS,
    StageReport,
    retry_or_fail,
)
from lifecycle.services.tokens import (
    token_claim,
    token_leases_renew,
    tokens_leased,
    tokens_leases_release,
)

logger = logging.getLogger(__name__)

EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg", "image/gif": "gif"}
YIELD_TO = "reveal"  # the stage a stage task makes way for between batches
YIELD_AFTER_SECONDS = 2.0  # how long its task may wait before that (a free worker takes it at once)


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


def _gathering_for(statuses: tuple[str, ...], *, batch_size: int, seconds: float) -> float:
    """How much longer to let due tokens gather into a batch: 0 when a batch of `batch_size` is
    due, when the oldest due token has waited `seconds`, or when none is due (one query)."""
    now = timezone.now()
    due = list(
        Token.objects.filter(status__in=statuses, next_attempt_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)[:batch_size]
    )
    if not due or len(due) >= batch_size:
        return 0.0
    return max(0.0, seconds - (now - due[0]).total_seconds())


StageWork = Callable[[list[Token], str, StageReport], None]


def run_stage(
    *,
    stage: str,
    worker_id: str,
    work: StageWork,
    budget_seconds: float,
    batch_size: int,
    max_batches: int | None = None,
    attempts: AttemptLimit,
    after_batch: Callable[[], None] | None = None,
    wait_for_backoff: bool = True,
    provider: object = None,
    gather_seconds: float = 0.0,
) -> StageReport:
    """Claim and work batches of `stage`'s due tokens until none is due soon, the budget ends or
    `max_batches` were worked. `after_batch` runs after each batch (the image task carries work
    on into the next stage there). `wait_for_backoff` False: stop when nothing is due rather than
    wait for a token backing off (a carry-on between batches of another stage must not).

    A batch is only as large as the `provider`'s account budget lets it be worked now: a worker
    claims no token it would hold while waiting for budget. With no budget it waits (holding
    nothing) for the budget's next turn, or stops when that is beyond the task's budget.

    `gather_seconds`: a provider that takes a whole batch in one request (Pinata's directory
    uploads) is asked once per batch, so a batch is claimed when it is full or when its oldest
    token has been due that long, not as soon as one token is due."""
    statuses = STAGE_STATUSES[stage]
    report = StageReport()
    deadline = time.monotonic() + budget_seconds
    lease = settings.GLISK.stage_lease_seconds
    batches = 0
    while time.monotonic() < deadline:
        if report.claimed and stage_waiting(stage=YIELD_TO, longer_than=YIELD_AFTER_SECONDS):
            # The keeper's task has waited for a worker while every worker was busy with stages:
            # hand this one back (the next task of this stage carries on) so a due reveal goes out.
            stage_nudge(stage=stage)
            report.details.append(f"yielded to {YIELD_TO}")
            break
        room = claimable(provider, batch_size)
        if room <= 0:
            turn = budget_wait_of(provider)
            if not wait_for_backoff or time.monotonic() + turn > deadline:
                report.details.append("no provider budget")
                break
            time.sleep(min(max(0.05, turn), MAX_BACKOFF_WAIT_SECONDS))
            continue
        if gather_seconds > 0 and wait_for_backoff:  # a carry-on takes what is due at once
            gathering = _gathering_for(statuses, batch_size=room, seconds=gather_seconds)
            if gathering > 0:
                if time.monotonic() + gathering > deadline:
                    break
                time.sleep(gathering)
                continue
        claim = token_claim(statuses=statuses, worker_id=worker_id, limit=room, lease_seconds=lease)
        if not claim.tokens:
            # Tokens backing off after a transient error would otherwise wait for the sweeper
            # (a minute): wait here for the next one that is due soon, holding no lock.
            wait = _next_due_in(statuses) if wait_for_backoff else None
            if wait is None or wait > MAX_BACKOFF_WAIT_SECONDS or time.monotonic() + wait > deadline:
                break
            time.sleep(max(0.05, wait))
            continue
        if len(claim.tokens) == room == batch_size:
            # A backlog: ask for one more worker on this stage (debounced, so it fans out gradually).
            stage_nudge(stage=stage)
        report.claimed += len(claim.tokens)
        batches += 1
        with lease_heartbeat(worker_id=worker_id, lease_seconds=lease):
            report.add(_work_batch(work, claim.tokens, worker_id, stage, attempts, deadline))
        if after_batch is not None:
            after_batch()
        if max_batches is not None and batches >= max_batches:
            break
    return report


@dataclass(frozen=True)
class AttemptLimit:
    """Where a stage counts a token's attempts, and how many it gets before the token fails."""

    field: str
    maximum: int


def _work_batch(
    work: StageWork, tokens: list[Token], worker_id: str, stage: str, limit: AttemptLimit, deadline: float
) -> StageReport:
    """Work a claimed batch. Anything unexpected for the batch (not a provider's answer, which
    each call records for its own token) must not end the task, nor hold the batch's other
    tokens back with the one that caused it: the tokens still leased to this worker are worked
    again one at a time, within the task's budget. What was recorded stays (attempt rows, stored
    images, tokens already handed on) and the work resumes from it: a paid call whose row is
    still `started` is polled, not bought again.

    A token that fails alone counts an attempt, as a transient provider error does, so it fails
    at the stage's cap with a reason instead of coming back forever. What made it fail may be
    no fault of its own (a storage or network outage), so each such attempt waits the maximum
    backoff: an outage has (attempts - 1) x RETRY_BACKOFF_MAX_SECONDS to pass before it fails a
    token. A database outage counts nothing, and neither do the tokens left when the budget
    ends: they go back due after the maximum backoff."""
    report = StageReport()
    try:
        work(tokens, worker_id, report)
        return report
    except Exception as exc:
        logger.exception(
            "stage.batch_error", extra={"tokens": len(tokens), "error_class": type(exc).__name__}
        )
        failure = exc
    failed_alone: list[tuple[Token, Exception]] = []
    remaining: list[Token] = []
    if len(tokens) == 1:  # nothing to tell apart: it failed alone
        failed_alone.append((tokens[0], failure))
    else:
        remaining = _still_leased(tokens, worker_id, failure, report)
    for at, token in enumerate(remaining):
        if time.monotonic() > deadline:
            _set_back(remaining[at:], worker_id, failure, report)
            break
        try:
            work([token], worker_id, report)
        except Exception as exc:
            logger.exception(
                "stage.token_error", extra={"token_id": token.pk, "error_class": type(exc).__name__}
            )
            failed_alone.append((token, exc))
    for token, error in failed_alone:
        _unexpected_attempt(token, error, worker_id=worker_id, stage=stage, limit=limit, report=report)
    return report


def _unexpected_attempt(
    token: Token,
    failure: Exception,
    *,
    worker_id: str,
    stage: str,
    limit: AttemptLimit,
    report: StageReport,
) -> None:
    """Count an attempt for a token that failed alone: it waits the maximum backoff, or fails at
    the cap."""
    for held in _still_leased([token], worker_id, failure, report):
        error = ProviderError(
            f"unexpected {type(failure).__name__}",
            transient=True,
            error_class=f"unexpected_{type(failure).__name__}"[:64],
            retry_after=settings.GLISK.retry_backoff_max_seconds,
        )
        retry_or_fail(
            token=held,
            worker_id=worker_id,
            actor=f"stage:{stage}",
            error=error,
            provider=f"{stage} stage",
            attempts_field=limit.field,
            attempts=getattr(held, limit.field) + 1,
            max_attempts=limit.maximum,
            report=report,
        )


def _set_back(tokens: list[Token], worker_id: str, failure: Exception, report: StageReport) -> None:
    """Give the tokens still leased to this worker back uncounted, due after the maximum backoff."""
    if not tokens:
        return
    with contextlib.suppress(DatabaseError):
        report.lost += tokens_leases_release(
            token_ids=[t.pk for t in tokens],
            worker_id=worker_id,
            fields={
                "last_error": f"unexpected {type(failure).__name__} in the stage; retried later"[:500],
                "next_attempt_at": timezone.now()
                + timedelta(seconds=settings.GLISK.retry_backoff_max_seconds),
            },
        )


def _still_leased(
    tokens: list[Token], worker_id: str, failure: Exception, report: StageReport
) -> list[Token]:
    """The tokens of `tokens` still leased to this worker, read again, after `failure`. When the
    database itself is what failed, none: they are set back as they are (an outage is no
    token's fault), if the database takes that."""
    if not isinstance(failure, (OperationalError, InterfaceError)):
        try:
            return tokens_leased(token_ids=[t.pk for t in tokens], worker_id=worker_id)
        except DatabaseError:
            logger.exception(
                "stage.batch_error", extra={"tokens": len(tokens), "error_class": "DatabaseError"}
            )
    _set_back(tokens, worker_id, failure, report)
    return []


def claimable(provider: object, tokens: int) -> int:
    """How many of `tokens` the provider's account budget lets a stage work now (all of them for
    a provider without one)."""
    admits = getattr(provider, "claimable", None)
    return tokens if admits is None else max(0, int(min(tokens, admits(tokens))))


def budget_wait_of(provider: object) -> float:
    """Seconds until the provider's account budget has room for a batch again (0 if unknown)."""
    wait = getattr(provider, "budget_wait", None)
    return 0.0 if wait is None else float(wait())


def network_bound(provider: object) -> bool:
    """A provider that waits on the network and bills each call (Replicate, Pinata)."""
    return bool(getattr(provider, "network_bound", False))


def concurrency_for(provider: object) -> int:
    """Threads only help providers that wait on the network; a local one is CPU-bound."""
    return settings.GLISK.stage_concurrency if network_bound(provider) else 1
