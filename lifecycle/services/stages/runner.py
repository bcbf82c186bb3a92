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
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.db.models import Model, Q
from django.utils import timezone

from glisk.core.bulk import update_from_values
from glisk.core.stages import stage_nudge, stage_waiting
from lifecycle.models import STAGE_STATUSES, AttemptOutcome, Token
from lifecycle.providers.errors import ContentPolicyViolation, ProviderError
from lifecycle.services.tokens import (
    InvalidStateTransition,
    token_claim,
    token_fail,
    token_lease_held,
    token_lease_release,
    token_leases_renew,
    tokens_leased,
    tokens_leases_held,
    tokens_leases_release,
    tokens_move,
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


def _outcome_of(error: ProviderError) -> str:
    if isinstance(error, ContentPolicyViolation):
        return AttemptOutcome.CONTENT_POLICY
    return AttemptOutcome.TRANSIENT_ERROR if error.transient else AttemptOutcome.PERMANENT_ERROR


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def without_urls(text: str) -> str:
    """An exception's text without URLs: they may carry keys, and this text reaches operators and
    the public token list (its generation_error)."""
    return _URL.sub("<url>", text)


@dataclass
class Call(Generic[T]):
    """One provider call of a stage's batch, recorded as an attempt row of the stage's model
    (`ImageJob`, `IpfsRecord`). `call(row)` does the paid work; `row` is an earlier attempt's row
    this call takes over (its worker died), else one is written for it before the call."""

    token: Token
    started_row: dict[str, Any]
    call: Callable[[Any], T]
    row: Any = None
    result: T | None = None
    error: ProviderError | None = None
    lost: bool = False  # the lease was taken over before the call: nothing was paid for
    duration_ms: int = 0
    error_text: str = ""  # what the attempt row says of an unexpected error (operators only)

    def failed_unexpectedly(self, exc: Exception) -> None:
        """Not the provider's answer (a full disk, a client library's own exception): recorded
        and counted like a transient provider error. The token's last error (which the public
        token list shows) names the class only; the attempt row, which only operators see, keeps
        the message without URLs."""
        self.error = ProviderError(
            f"unexpected {type(exc).__name__}",
            transient=True,
            error_class=f"unexpected_{type(exc).__name__}"[:64],
        )
        self.error_text = f"{self.error}: {without_urls(str(exc))[:1000]}"


def calls_run(
    model: type[Model], calls: list[Call[Any]], *, worker_id: str, concurrency: int, paid: bool = False
) -> None:
    """Run a batch's provider calls, each recorded as an attempt row before it starts.

    Before anything is paid for, one query checks the batch's leases (a call whose token was
    taken over is `lost` and not made) and one multi-row INSERT writes the attempt rows, so a
    crash mid-call leaves a trace (and whatever the call records on its row, such as a
    prediction to resume). Calls wait on the network, so a network-bound provider's calls run on
    up to `concurrency` threads (each with its own database connection). Each call ends with a
    `result` or an `error`; `calls_finish` records them."""
    live = _calls_start(model, calls, worker_id=worker_id)
    workers = min(concurrency, len(live))
    check = worker_id if paid else None
    if workers <= 1:
        for c in live:
            _call_one(c, check_lease_of=check)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage-call") as pool:
        list(pool.map(functools.partial(_call_one, check_lease_of=check, own_connection=True), live))


def calls_run_together(
    model: type[Model], calls: list[Call[Any]], *, worker_id: str, work: Callable[[list[Call[Any]]], None]
) -> None:
    """`calls_run` for calls that one provider request serves together (a directory upload):
    the same lease check and attempt rows, then `work(live calls)` once, which sets each call's
    `result` or `error`; every call is timed as the whole request."""
    live = _calls_start(model, calls, worker_id=worker_id)
    if not live:
        return
    started = time.monotonic()
    try:
        work(live)
    except ProviderError as exc:
        for c in live:
            c.error = exc
    except Exception as exc:
        logger.exception("stage.unexpected_error", extra={"error_class": type(exc).__name__})
        for c in live:
            c.failed_unexpectedly(exc)
    duration_ms = int((time.monotonic() - started) * 1000)
    for c in live:
        c.duration_ms = duration_ms


def _calls_start(model: type[Model], calls: list[Call[Any]], *, worker_id: str) -> list[Call[Any]]:
    """The calls whose token is still leased to this worker (the others are `lost`), each with
    its attempt row written (one query checks the leases, one INSERT writes the rows)."""
    if not calls:
        return []
    held = tokens_leases_held(token_ids=[c.token.pk for c in calls], worker_id=worker_id)
    live = []
    for c in calls:
        if c.token.pk in held:
            live.append(c)
        else:
            c.lost = True
    new = [c for c in live if c.row is None]
    if new:
        rows = model._default_manager.bulk_create([model(**c.started_row) for c in new])
        for c, row in zip(new, rows, strict=True):
            c.row = row
    return live


def _call_one(c: Call[Any], *, check_lease_of: str | None = None, own_connection: bool = False) -> None:
    started = time.monotonic()
    try:
        if check_lease_of is not None and not token_lease_held(token_id=c.token.pk, worker_id=check_lease_of):
            # Its attempt row stays `started` without an id: a later worker searches for the
            # work by the row's seed before buying any, and finds none.
            c.lost = True
            return
        c.result = c.call(c.row)
    except ProviderError as exc:
        c.error = exc
    except Exception as exc:
        # Not the provider's answer (a full disk, a client library's own exception): recorded and
        # counted like a transient provider error, so it backs off and fails at the cap instead
        # of being paid for again at every lease expiry.
        logger.exception("stage.unexpected_error", extra={"error_class": type(exc).__name__})
        c.failed_unexpectedly(exc)
    finally:
        c.duration_ms = int((time.monotonic() - started) * 1000)
        if own_connection:
            connections.close_all()  # this thread's connections only


def calls_finish(
    model: type[Model],
    calls: list[Call[T]],
    *,
    succeeded: Callable[[Call[T]], dict[str, Any]],
    failed: Callable[[ProviderError], dict[str, Any]] | None = None,
) -> None:
    """Record how each call that was made ended, on its attempt row: the outcome, the duration,
    and what `succeeded` (or `failed`) says about it. One UPDATE for the batch's successes, one
    for its failures."""
    now = timezone.now()
    finished: dict[Any, dict[str, Any]] = {}
    for c in calls:
        if c.lost or c.row is None:
            continue
        values: dict[str, Any] = {"duration_ms": c.duration_ms, "finished_at": now}
        if c.error is None:
            values.update(outcome=AttemptOutcome.SUCCEEDED, **succeeded(c))
        else:
            values.update(
                outcome=_outcome_of(c.error),
                error=c.error_text or str(c.error)[:2000],
                error_class=c.error.error_class,
                **(failed(c.error) if failed else {}),
            )
        finished[c.row.pk] = values
    update_from_values(model, finished)


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


StageWork = Callable[[list[Token], str, StageReport], None]


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
