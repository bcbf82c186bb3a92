"""What the keeper may do to tokens, and only this: bind a batch to a signed reveal transaction,
move a binding to a replacement, confirm a mined reveal, release a batch that did not reveal, and
sync a token the chain says is revealed already.

The binding is the one predicate everyone shares. A token is "in a reveal transaction" while
`reveal_transaction` is set and the token is not revealed; binding takes the rows' locks and
checks they are still ready, unbound and carry the metadata the transaction reveals, and operator
actions take the same lock and refuse a bound token. So either the keeper binds first (and the
operator is told which transaction to wait for) or the operator moves the token first (and the
keeper's binding fails before anything is broadcast).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from glisk.core.errors import ApplicationError
from lifecycle.models import TERMINAL_STATUSES, Token, TokenStatus
from lifecycle.services.tokens import token_fail, token_transition, tokens_transition

logger = logging.getLogger(__name__)

ACTOR = "stage:reveal"


class BatchChanged(ApplicationError):
    """Some tokens of a batch changed after the keeper read them; nothing was bound."""

    status_code = 409
    error_type = "batch_changed"

    def __init__(self, changed: Mapping[int, str]):
        self.changed = dict(changed)
        shown = ", ".join(f"#{t} ({why})" for t, why in sorted(self.changed.items())[:10])
        super().__init__(f"{len(self.changed)} token(s) changed since the batch was read: {shown}")


def cid_from_uri(uri: str) -> str:
    """The CID of an `ipfs://<cid>[/path]` URI, else ''."""
    if not uri.startswith("ipfs://"):
        return ""
    return uri[len("ipfs://") :].split("/", 1)[0]


def reveal_batch_assign(*, tokens: Mapping[int, str], reveal_transaction_id: int) -> None:
    """Bind every token of `tokens` (id → the metadata CID the transaction reveals) to the reveal
    transaction, or none: raises `BatchChanged` if any is no longer ready, is bound already, has
    other metadata now, or its mint is disputed. Call it inside the transaction that stores the
    signed bytes, so a refusal rolls that back too and nothing is broadcast."""
    with transaction.atomic():
        rows = (
            Token.objects.select_for_update()
            .filter(pk__in=list(tokens))
            .order_by("pk")  # one locking order for every batch: no deadlocks between them
            .values_list("pk", "status", "reveal_transaction_id", "metadata_cid", "mint_disputed_at")
        )
        found = {pk: (status, bound, cid, disputed) for pk, status, bound, cid, disputed in rows}
        changed: dict[int, str] = {}
        for token_id, cid in tokens.items():
            if token_id not in found:
                changed[token_id] = "gone"
                continue
            status, bound, current_cid, disputed = found[token_id]
            if status != TokenStatus.READY:
                changed[token_id] = status
            elif disputed is not None:
                changed[token_id] = "mint disputed"
            elif bound is not None:
                changed[token_id] = "in another reveal transaction"
            elif current_cid != cid:
                changed[token_id] = "new metadata"
        if changed:
            raise BatchChanged(changed)
        Token.objects.filter(pk__in=list(tokens)).update(
            reveal_transaction_id=reveal_transaction_id, updated_at=timezone.now()
        )


def reveal_batch_reassign(*, from_transaction_id: int, to_transaction_id: int) -> int:
    """Move the binding of a replaced transaction's tokens to its replacement."""
    return Token.objects.filter(reveal_transaction_id=from_transaction_id).update(
        reveal_transaction_id=to_transaction_id, updated_at=timezone.now()
    )


@dataclass
class Confirmation:
    revealed: int = 0
    repaired: list[int] = field(default_factory=list)


def reveal_batch_confirm(
    *, tokens: Mapping[int, str], reveal_transaction_id: int, tx_hash: str, block: int
) -> Confirmation:
    """The transaction revealed `tokens` (id → metadata CID it set on chain): move them to
    `revealed`. A token the database had elsewhere (which the binding rules out, but the chain is
    the truth) is repaired to `revealed` with the on-chain CID, and its timeline says what the
    database had."""
    now = timezone.now()
    result = Confirmation()
    with transaction.atomic():
        others = tokens_transition(
            token_ids=list(tokens),
            to=TokenStatus.REVEALED,
            actor=ACTOR,
            reason=f"revealed in {tx_hash}",
            sources=[TokenStatus.READY],
            fields={"reveal_transaction_id": reveal_transaction_id, "revealed_at": now},
            detail={"tx_hash": tx_hash, "block": block},
        )
        result.revealed = len(tokens) - len(others)
        for token_id, status in others.items():
            if status is None or status == TokenStatus.REVEALED:
                continue
            _repair_revealed(
                token_id=token_id,
                cid=tokens[token_id],
                reason=f"revealed on chain in {tx_hash} while the database said {status}; synced",
                fields={"reveal_transaction_id": reveal_transaction_id, "revealed_at": now},
                detail={"tx_hash": tx_hash, "block": block, "database_status": status},
            )
            result.repaired.append(token_id)
    return result


def _repair_revealed(
    *, token_id: int, cid: str, reason: str, fields: dict[str, object], detail: dict[str, object]
) -> None:
    current = Token.objects.filter(pk=token_id).values_list("metadata_cid", flat=True).first()
    if current != cid:
        detail = {**detail, "database_metadata_cid": current}
    token_transition(
        token_id=token_id,
        to=TokenStatus.REVEALED,
        actor=ACTOR,
        reason=reason,
        fields={**fields, "metadata_cid": cid, "failed_stage": "", "reveal_requested_at": None},
        detail=detail,
    )
    logger.error("reveal.token_repaired", extra={"token_id": token_id, **detail})


def reveal_batch_release(*, reveal_transaction_id: int, reason: str, max_attempts: int) -> int:
    """Unbind the tokens of a transaction that did not reveal them (reverted, dropped, nonce used
    by another): each ready one goes back to the queue after a backoff, or fails once it has had
    `max_attempts`. Returns how many failed."""
    failed = 0
    with transaction.atomic():
        bound = list(
            Token.objects.select_for_update()
            .filter(reveal_transaction_id=reveal_transaction_id)
            .order_by("pk")
            .values_list("pk", "status", "reveal_attempts")
        )
        for token_id, status, attempts_before in bound:
            attempts = attempts_before + 1
            if status == TokenStatus.READY and attempts >= max_attempts:
                token_fail(
                    token_id=token_id,
                    actor=ACTOR,
                    reason=reason,
                    detail={"reveal_transaction_id": reveal_transaction_id},
                    fields={"reveal_attempts": attempts, "reveal_transaction": None},
                )
                failed += 1
            elif status == TokenStatus.READY:
                Token.objects.filter(pk=token_id).update(
                    reveal_attempts=attempts,
                    reveal_transaction=None,
                    last_error=reason[:500],
                    next_attempt_at=timezone.now() + timedelta(seconds=min(60, 2**attempts)),
                    updated_at=timezone.now(),
                )
            elif status not in TERMINAL_STATUSES:
                Token.objects.filter(pk=token_id).update(reveal_transaction=None, updated_at=timezone.now())
    return failed


def reveal_postpone(*, token_id: int, reason: str, max_attempts: int) -> bool:
    """A ready token the keeper cannot check or send now (its own view calls fail) waits a backoff
    and counts an attempt, failing at `max_attempts`, so that it never holds back the others.
    Returns whether it failed."""
    with transaction.atomic():
        row = (
            Token.objects.select_for_update()
            .filter(pk=token_id, status=TokenStatus.READY, reveal_transaction=None)
            .values_list("reveal_attempts", flat=True)
            .first()
        )
        if row is None:
            return False  # moved meanwhile: not the keeper's
        attempts = row + 1
        if attempts >= max_attempts:
            token_fail(token_id=token_id, actor=ACTOR, reason=reason, fields={"reveal_attempts": attempts})
            return True
        Token.objects.filter(pk=token_id).update(
            reveal_attempts=attempts,
            last_error=reason[:500],
            next_attempt_at=timezone.now() + timedelta(seconds=min(60, 2**attempts)),
            updated_at=timezone.now(),
        )
    return False


def token_sync_revealed(*, token_id: int, token_uri: str) -> None:
    """The chain says a ready token is revealed already (another sender, a crash before we
    recorded it): record it as revealed with the URI's CID, without a transaction of ours."""
    cid = cid_from_uri(token_uri)
    current = Token.objects.filter(pk=token_id).values_list("metadata_cid", flat=True).first()
    reason = "already revealed on chain; synced without a transaction"
    if current is not None and cid and current != cid:
        reason += f" (on chain {cid}, database had {current})"
    token_transition(
        token_id=token_id,
        to=TokenStatus.REVEALED,
        actor=ACTOR,
        reason=reason,
        sources=[TokenStatus.READY],
        fields={"metadata_cid": cid or current or ""},
        detail={"token_uri": token_uri},
    )
