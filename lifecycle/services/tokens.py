"""The token state machine and the stage-claim primitive.

`token_transition` is the only code that writes `Token.status`: a compare-and-swap UPDATE that
writes the history row in the same transaction. `token_claim` hands a stage a disjoint batch of
due tokens under a lease; `token_transition(..., lease_owner=…)` finishes only if the lease is
still ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from authors.models import Author
from glisk.core.bulk import update_from_values
from glisk.core.errors import ApplicationError
from lifecycle.models import (
    ALLOWED_TRANSITIONS,
    RETRYABLE_STAGES,
    TERMINAL_STATUSES,
    Token,
    TokenStatus,
    TokenTransition,
)

logger = logging.getLogger(__name__)

# A token sent back for a new image (an operator's regenerate, a mint correction) starts over
# from scratch downstream of that stage.
FRESH_IMAGE: dict[str, Any] = {
    "image": "",
    "image_content_type": "",
    "prompt_text": "",
    "fallback_prompt_used": False,
    "image_attempts": 0,
}
FRESH_PINS: dict[str, Any] = {
    "image_cid": "",
    "metadata_cid": "",
    "metadata": None,
    "ipfs_attempts": 0,
    "failed_stage": "",
    "reveal_requested_at": None,
    "reveal_transaction": None,
    # A worker still busy with the token loses its lease: its later writes match nothing.
    "claimed_by": "",
    "lease_expires_at": None,
}


class InvalidStateTransition(ApplicationError):
    """The token was not in a state from which the wanted transition applies."""

    status_code = 409
    error_type = "invalid_transition"

    def __init__(self, *, token_id: int, current: str | None, wanted: str, allowed_from: Iterable[str]):
        self.token_id = token_id
        self.current = current
        self.wanted = wanted
        self.allowed_from = sorted(allowed_from)
        where = "does not exist" if current is None else f"is {current}"
        super().__init__(
            f"token #{token_id} {where}; cannot move to {wanted} "
            f"(allowed from: {', '.join(self.allowed_from) or 'nowhere'})"
        )


class LeaseLost(InvalidStateTransition):
    """The token's lease is no longer held by this worker (it expired and was reclaimed)."""


def _sources_for(to: str) -> set[str]:
    return {src for src, targets in ALLOWED_TRANSITIONS.items() if to in targets}


def _checked_sources(to: str, sources: Iterable[str] | None) -> set[str]:
    legal = _sources_for(to)
    if sources is not None and not set(sources) <= legal:
        illegal = ", ".join(sorted(set(sources) - legal))
        raise ValueError(f"{illegal} → {to} is not in ALLOWED_TRANSITIONS")
    return legal if sources is None else legal & set(sources)


def _moved_values(
    to: str, now: datetime, fields: dict[str, Any] | None, *, release_lease: bool
) -> dict[str, Any]:
    """What the UPDATE writes besides the caller's `fields`."""
    values: dict[str, Any] = dict(fields or {})
    # The database's clock: attempts made in this status are told from older ones by comparing
    # their created_at (also the database's) with it, whichever machines wrote the two.
    values.update(status=to, status_changed_at=Now(), updated_at=now)
    if to == TokenStatus.REVEALED:
        values.setdefault("revealed_at", now)
    if to in TERMINAL_STATUSES or release_lease:
        values.update(claimed_by="", lease_expires_at=None)
    return values


def _history_row(
    token_id: int, from_status: str, to: str, *, reason: str, actor: str, detail: Any, now: datetime
) -> TokenTransition:
    return TokenTransition(
        token_id=token_id,
        from_status=from_status,
        to_status=to,
        reason=reason[:500],
        actor=actor[:128],
        detail=detail,
        created_at=now,
    )


def token_transition(
    *,
    token_id: int,
    to: str,
    actor: str,
    reason: str = "",
    sources: Iterable[str] | None = None,
    lease_owner: str | None = None,
    release_lease: bool = True,
    fields: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Move token `token_id` to `to` if it is in one of `sources` (default: every legal source).

    `fields` are written in the same UPDATE (e.g. the image CID a stage produced). With
    `lease_owner`, the update applies only while that worker still holds the token's lease, and
    the lease is released (unless `release_lease` is false: a stage starting its work).
    Raises `InvalidStateTransition` (or `LeaseLost`) when nothing matched.
    """
    allowed = _checked_sources(to, sources)
    now = timezone.now()
    values = _moved_values(to, now, fields, release_lease=lease_owner is not None and release_lease)

    def history(current: str) -> TokenTransition:
        return _history_row(token_id, current, to, reason=reason, actor=actor, detail=detail, now=now)

    if len(allowed) == 1:
        # One possible source (every stage's own moves): the conditional UPDATE is the
        # compare-and-swap and names the status we moved from, so no locking read is needed.
        (current,) = allowed
        match: dict[str, Any] = {"pk": token_id, "status": current}
        if lease_owner is not None:
            match["claimed_by"] = lease_owner
        with transaction.atomic():
            moved = Token.objects.filter(**match).update(**values)
            if moved:
                history(current).save(force_insert=True)
        if not moved:
            row = Token.objects.filter(pk=token_id).values_list("status", "claimed_by").first()
            if row is not None and row[0] == current and lease_owner is not None:
                raise LeaseLost(token_id=token_id, current=current, wanted=to, allowed_from=allowed)
            raise InvalidStateTransition(
                token_id=token_id, current=row[0] if row else None, wanted=to, allowed_from=allowed
            )
    else:
        with transaction.atomic():
            # Lock the row so the history records the status we actually moved from.
            row = (
                Token.objects.select_for_update()
                .filter(pk=token_id)
                .values_list("status", "claimed_by")
                .first()
            )
            if row is None or row[0] not in allowed:
                raise InvalidStateTransition(
                    token_id=token_id, current=row[0] if row else None, wanted=to, allowed_from=allowed
                )
            current = row[0]
            if lease_owner is not None and row[1] != lease_owner:
                raise LeaseLost(token_id=token_id, current=current, wanted=to, allowed_from=allowed)
            Token.objects.filter(pk=token_id, status=current).update(**values)
            history(current).save(force_insert=True)
    logger.info("token.transition", extra={"token_id": token_id, "from": current, "to": to, "actor": actor})


def tokens_transition(
    *,
    token_ids: Sequence[int],
    to: str,
    actor: str,
    reason: str,
    sources: Iterable[str],
    fields: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[int, str | None]:
    """`token_transition` for a batch in one transaction of three statements (the keeper's
    confirmed reveal). Tokens not in `sources` are left alone and returned with their status."""
    allowed = _checked_sources(to, sources)
    now = timezone.now()
    values = _moved_values(to, now, fields, release_lease=False)
    with transaction.atomic():
        found = dict(
            Token.objects.select_for_update()
            .filter(pk__in=token_ids)
            .order_by("pk")  # one locking order for every batch: no deadlocks between them
            .values_list("pk", "status")
        )
        moving = [t for t in token_ids if found.get(t) in allowed]
        if moving:
            Token.objects.filter(pk__in=moving).update(**values)
            TokenTransition.objects.bulk_create(
                _history_row(t, found[t], to, reason=reason, actor=actor, detail=detail, now=now)
                for t in moving
            )
    for t in moving:
        logger.info("token.transition", extra={"token_id": t, "from": found[t], "to": to, "actor": actor})
    return {t: found.get(t) for t in token_ids if found.get(t) not in allowed}


def tokens_move(
    *,
    fields: Mapping[int, Mapping[str, Any]],
    to: str,
    source: str,
    lease_owner: str,
    actor: str,
    reason: str,
    release_lease: bool = True,
    detail: dict[str, Any] | None = None,
) -> set[int]:
    """`token_transition` for a stage's claimed batch, with each token's own `fields`: one
    compare-and-swap UPDATE for the whole batch (status `source` and the lease held by
    `lease_owner`, checked per row in that statement) and one multi-row history INSERT, in one
    transaction (the caller's, if it has one: a stage queues the next stage's task in it). Returns
    the tokens that moved; the others were taken over or moved away meanwhile."""
    if not fields:
        return set()
    _checked_sources(to, [source])
    now = timezone.now()
    with transaction.atomic(savepoint=False):  # inside a stage's hand-on: no savepoint of its own
        moved = update_from_values(
            Token,
            {pk: _moved_values(to, now, dict(v), release_lease=release_lease) for pk, v in fields.items()},
            where={"status": source, "claimed_by": lease_owner},
        )
        TokenTransition.objects.bulk_create(
            _history_row(pk, source, to, reason=reason, actor=actor, detail=detail, now=now)
            for pk in sorted(moved)
        )
    for pk in sorted(moved):
        logger.info("token.transition", extra={"token_id": pk, "from": source, "to": to, "actor": actor})
    return moved


def tokens_lease_update(*, fields: Mapping[int, Mapping[str, Any]], worker_id: str) -> set[int]:
    """Write each leased token's own `fields` (no status change: the image CID a stage keeps
    before going on) in one statement, only where `worker_id` still holds the lease. Returns the
    tokens written."""
    now = timezone.now()
    return update_from_values(
        Token,
        {pk: {**values, "updated_at": now} for pk, values in fields.items()},
        where={"claimed_by": worker_id},
    )


def _leased_to(token_ids: Iterable[int], worker_id: str) -> QuerySet[Token]:
    return Token.objects.filter(
        pk__in=list(token_ids), claimed_by=worker_id, lease_expires_at__gt=timezone.now()
    )


def tokens_leases_held(*, token_ids: Iterable[int], worker_id: str) -> set[int]:
    """Which of these tokens `worker_id` still holds an unexpired lease on (one query)."""
    return set(_leased_to(token_ids, worker_id).values_list("pk", flat=True))


def tokens_leased(*, token_ids: Iterable[int], worker_id: str) -> list[Token]:
    """The tokens `worker_id` still holds an unexpired lease on, as they are now, in key order."""
    return list(_leased_to(token_ids, worker_id).order_by("pk"))


def token_fail(
    *,
    token_id: int,
    actor: str,
    reason: str,
    lease_owner: str | None = None,
    detail: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    """Move a token to `failed`, remembering the stage it failed from and why."""
    current = Token.objects.filter(pk=token_id).values_list("status", flat=True).first()
    stage = current if current in RETRYABLE_STAGES else ""
    token_transition(
        token_id=token_id,
        to=TokenStatus.FAILED,
        actor=actor,
        reason=reason,
        sources=[stage] if stage else None,
        lease_owner=lease_owner,
        fields={
            **(fields or {}),
            "failed_stage": stage,
            "last_error": reason[:500],
            "last_error_detail": detail,
        },
        detail=detail,
    )


def token_retry(*, token_id: int, actor: str, reason: str = "operator retry") -> str:
    """Send a failed token back to the stage that failed, with fresh attempt counters.

    Returns the status it went back to.
    """
    row = Token.objects.filter(pk=token_id).values_list("status", "failed_stage").first()
    if row is None or row[0] != TokenStatus.FAILED:
        raise InvalidStateTransition(
            token_id=token_id,
            current=row[0] if row else None,
            wanted="retry",
            allowed_from=[TokenStatus.FAILED],
        )
    stage = row[1] or TokenStatus.DETECTED
    token_transition(
        token_id=token_id,
        to=stage,
        actor=actor,
        reason=reason,
        sources=[TokenStatus.FAILED],
        fields={
            "failed_stage": "",
            "next_attempt_at": timezone.now(),
            "image_attempts": 0,
            "ipfs_attempts": 0,
            "reveal_attempts": 0,
            "reveal_transaction": None,
        },
    )
    return stage


@dataclass(frozen=True)
class Claim:
    """A batch of tokens leased to one worker until `lease_expires_at`."""

    worker_id: str
    lease_expires_at: datetime
    tokens: list[Token]

    @property
    def ids(self) -> list[int]:
        return [t.pk for t in self.tokens]


def token_claim(
    *,
    statuses: Sequence[str],
    worker_id: str,
    limit: int,
    lease_seconds: int,
    now: datetime | None = None,
) -> Claim:
    """Lease up to `limit` due tokens in `statuses` to `worker_id`.

    Due means `next_attempt_at <= now` and no live lease. Rows locked by another claimer are
    skipped (`SKIP LOCKED`), so concurrent claimers get disjoint sets; the lock is released at
    commit, and the lease keeps the tokens ours until it expires.
    """
    now = now or timezone.now()
    expires = now + timedelta(seconds=lease_seconds)
    tokens: list[Token] = []
    with transaction.atomic():
        # One status at a time, in the order given: each read walks token_queue_idx in the
        # ORDER BY's order and stops at the limit (over several statuses it would sort them all).
        for status in statuses:
            tokens += list(
                Token.objects.select_for_update(skip_locked=True)
                .filter(status=status, next_attempt_at__lte=now)
                .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
                .order_by("next_attempt_at", "token_id")[: limit - len(tokens)]
            )
            if len(tokens) >= limit:
                break
        if tokens:
            Token.objects.filter(pk__in=[t.pk for t in tokens]).update(
                claimed_by=worker_id, lease_expires_at=expires, updated_at=now
            )
            for token in tokens:
                token.claimed_by, token.lease_expires_at = worker_id, expires
    # The stages need each token's author: one query for the batch, after the locks are taken
    # (joined into the locking read, it would be read and sorted for every due token).
    authors = Author.objects.in_bulk({t.author_id for t in tokens})
    for token in tokens:
        token.author = authors[token.author_id]
    return Claim(worker_id=worker_id, lease_expires_at=expires, tokens=tokens)


def token_lease_release(*, token_id: int, worker_id: str, fields: dict[str, Any] | None = None) -> bool:
    """Give a leased token back without changing its status (e.g. to retry later).

    `fields` (attempt counts, `next_attempt_at`, last error) are written only if the lease is
    still ours. Returns whether it was.
    """
    values = dict(fields or {})
    values.update(claimed_by="", lease_expires_at=None, updated_at=timezone.now())
    return Token.objects.filter(pk=token_id, claimed_by=worker_id).update(**values) == 1


def tokens_leases_release(
    *, token_ids: Iterable[int], worker_id: str, fields: dict[str, Any] | None = None
) -> int:
    """`token_lease_release` for several tokens at once (one statement); returns how many were
    still leased to `worker_id`."""
    values = dict(fields or {})
    values.update(claimed_by="", lease_expires_at=None, updated_at=timezone.now())
    return Token.objects.filter(pk__in=list(token_ids), claimed_by=worker_id).update(**values)


def token_lease_held(*, token_id: int, worker_id: str) -> bool:
    """Whether `worker_id` still holds an unexpired lease on the token."""
    return Token.objects.filter(
        pk=token_id, claimed_by=worker_id, lease_expires_at__gt=timezone.now()
    ).exists()


def token_leases_renew(*, worker_id: str, lease_seconds: int) -> int:
    """Push back the expiry of every lease `worker_id` still holds (its heartbeat). Returns how
    many it renewed; a lease another worker took over is not this worker's any more.

    Rows are taken in key order and rows locked at this moment are skipped (this worker's own
    batch statement holds them, or an operator's action): a heartbeat never waits on, or
    deadlocks with, a multi-row statement over the same tokens; the next beat renews them."""
    now = timezone.now()
    table = Token._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET lease_expires_at = %s WHERE token_id IN ("  # noqa: S608 (our table name)
            f"SELECT token_id FROM {table} WHERE claimed_by = %s AND lease_expires_at > %s "
            "ORDER BY token_id FOR UPDATE SKIP LOCKED)",
            [now + timedelta(seconds=lease_seconds), worker_id, now],
        )
        return int(cursor.rowcount)


def token_leases_release_dead(*, host: str, alive: Callable[[int], bool]) -> dict[str, int]:
    """Free the leases held by this host's workers whose process is gone (a cluster that was
    SIGKILLed or OOM-killed, restarting on the same machine): their tokens are claimable at once
    instead of when the lease runs out. Worker ids are `host:pid:suffix` (lifecycle.tasks; `host`
    names the machine's boot and PID namespace too); `alive(pid)` tells whether a process of this
    host still runs. Returns released tokens per
    dead worker."""
    now = timezone.now()
    holders = (
        Token.objects.filter(claimed_by__startswith=f"{host}:", lease_expires_at__gt=now)
        .values_list("claimed_by", flat=True)
        .distinct()
    )
    released: dict[str, int] = {}
    for holder in holders:
        _, _, rest = holder.partition(f"{host}:")
        pid_text = rest.split(":", 1)[0]
        if not pid_text.isdigit() or alive(int(pid_text)):
            continue
        count = Token.objects.filter(claimed_by=holder).update(
            claimed_by="", lease_expires_at=None, updated_at=now
        )
        if count:
            released[holder] = count
            logger.warning("token.dead_worker_leases_released", extra={"worker": holder, "tokens": count})
    return released
