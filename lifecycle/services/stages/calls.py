"""A stage's provider calls, each recorded as an attempt row of the stage's model (`ImageJob`,
`IpfsRecord`): written before the call, checked against the token's lease, finished after it."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Model
from django.utils import timezone

from glisk.core.bulk import update_from_values
from lifecycle.models import AttemptOutcome, Token
from lifecycle.providers.errors import ContentPolicyViolation, ProviderError
from lifecycle.services.tokens import token_lease_held, tokens_leases_held

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
