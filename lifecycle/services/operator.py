"""Operator actions on tokens. Each one locks the token's row, checks its state under that lock,
changes it through the state machine (so it lands in the timeline with the operator's name and
reason) and nudges the stage that has work now, all in one transaction. A refused action raises
`ActionRefused` with the reason and changes nothing.

The row lock is the one the keeper takes to bind a batch to a reveal transaction, so an action
either sees the binding (and is refused, naming the transaction) or moves the token before the
keeper binds it (and the keeper drops it before broadcasting).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from glisk.core.errors import ApplicationError
from glisk.core.stages import stage_nudge
from lifecycle.models import STAGE_OF, TERMINAL_STATUSES, Token, TokenStatus, TokenTransition
from lifecycle.services.tokens import (
    FRESH_IMAGE,
    FRESH_PINS,
    InvalidStateTransition,
    token_fail,
    token_retry,
    token_transition,
)


class ActionRefused(ApplicationError):
    """The action does not apply to the token as it is; the message says why."""

    status_code = 409
    error_type = "action_refused"


def _actor(operator: str) -> str:
    return f"operator:{operator}"


def _locked(token_id: int) -> Token:
    """The token with its row locked until the caller's transaction ends."""
    # Not joined with its reveal transaction: when the keeper binds the token while we wait for
    # the lock, PostgreSQL re-reads the token row but keeps the join's old (empty) side, so the
    # token named a transaction it did not carry. It is read by its id when a refusal names it.
    token = Token.objects.select_for_update().filter(pk=token_id).first()
    if token is None:
        raise ActionRefused(f"token #{token_id} does not exist")
    return token


def in_reveal_transaction(token: Token) -> bool:
    """Bound to a reveal transaction that has not revealed it (yet)."""
    return token.reveal_transaction_id is not None and token.status != TokenStatus.REVEALED


def _not_in_reveal(token: Token, action: str) -> None:
    if in_reveal_transaction(token):
        tx = token.reveal_transaction
        assert tx is not None
        raise ActionRefused(
            f"token #{token.pk} cannot be {action}: it is in reveal transaction {tx.tx_hash} "
            f"({tx.status}); wait for it to confirm or fail"
        )


def _require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ActionRefused("a reason is required")
    return reason


def operator_retry(*, token_id: int, operator: str, reason: str) -> str:
    """Send a failed token back to the stage that failed."""
    reason = _require_reason(reason)
    with transaction.atomic():
        token = _locked(token_id)
        if token.status != TokenStatus.FAILED:
            raise ActionRefused(f"token #{token_id} is {token.status}, not failed: nothing to retry")
        stage = token_retry(token_id=token_id, actor=_actor(operator), reason=reason)
        stage_nudge(stage=STAGE_OF[stage])
    return f"token #{token_id} goes back to {stage}"


def operator_regenerate(*, token_id: int, operator: str, reason: str) -> str:
    """Generate a new image (before reveal only): back to `generating` with a fresh prompt."""
    reason = _require_reason(reason)
    with transaction.atomic():
        token = _locked(token_id)
        if token.status == TokenStatus.REVEALED:
            raise ActionRefused(f"token #{token_id} is revealed on chain; its image can no longer change")
        if token.status in (TokenStatus.DETECTED, TokenStatus.GENERATING):
            raise ActionRefused(f"token #{token_id} is {token.status}: its image is being made already")
        _not_in_reveal(token, "regenerated")
        token_transition(
            token_id=token_id,
            to=TokenStatus.GENERATING,
            actor=_actor(operator),
            reason=f"regenerate: {reason}",
            sources=[token.status],
            fields={**FRESH_IMAGE, **FRESH_PINS, "next_attempt_at": timezone.now()},
        )
        stage_nudge(stage="image")
    return f"token #{token_id} will get a new image"


def operator_repin(*, token_id: int, operator: str, reason: str) -> str:
    """Pin the stored image and metadata again (before reveal only)."""
    reason = _require_reason(reason)
    with transaction.atomic():
        token = _locked(token_id)
        if token.status not in (TokenStatus.READY, TokenStatus.FAILED) or (
            token.status == TokenStatus.FAILED
            and token.failed_stage not in (TokenStatus.UPLOADING, TokenStatus.READY)
        ):
            raise ActionRefused(
                f"token #{token_id} is {token.status}: only ready tokens, or tokens that failed "
                "after their image was stored, can be re-pinned"
            )
        if not token.image:
            raise ActionRefused(f"token #{token_id} has no stored image: regenerate it instead")
        _not_in_reveal(token, "re-pinned")
        token_transition(
            token_id=token_id,
            to=TokenStatus.UPLOADING,
            actor=_actor(operator),
            reason=f"re-pin: {reason}",
            sources=[token.status],
            fields={**FRESH_PINS, "next_attempt_at": timezone.now()},
        )
        stage_nudge(stage="ipfs")
    return f"token #{token_id} will be pinned again"


def operator_reveal_now(*, token_id: int, operator: str, reason: str) -> str:
    """Reveal a ready token without waiting for its batch to fill."""
    reason = _require_reason(reason)
    with transaction.atomic():
        token = _locked(token_id)
        if token.status != TokenStatus.READY:
            raise ActionRefused(f"token #{token_id} is {token.status}: only ready tokens can be revealed")
        _not_in_reveal(token, "revealed again")
        now = timezone.now()
        Token.objects.filter(pk=token_id).update(reveal_requested_at=now, next_attempt_at=now, updated_at=now)
        TokenTransition.objects.create(
            token_id=token_id,
            from_status=token.status,
            to_status=token.status,
            actor=_actor(operator),
            reason=f"reveal now: {reason}",
        )
        stage_nudge(stage="reveal")
    return (
        f"token #{token_id} will be revealed in the next transaction, without waiting for a batch "
        "(only tokens an operator asked to reveal now go with it)"
    )


def operator_mark_failed(*, token_id: int, operator: str, reason: str) -> str:
    """Stop a token's pipeline with a reason (an operator can retry it later)."""
    reason = _require_reason(reason)
    with transaction.atomic():
        token = _locked(token_id)
        if token.status in TERMINAL_STATUSES:
            raise ActionRefused(f"token #{token_id} is {token.status} already")
        _not_in_reveal(token, "marked failed")
        try:
            token_fail(
                token_id=token_id, actor=_actor(operator), reason=f"marked failed by {operator}: {reason}"
            )
        except InvalidStateTransition as exc:
            raise ActionRefused(str(exc)) from None
    return f"token #{token_id} is marked failed"


ACTIONS: dict[str, Callable[..., str]] = {
    "retry": operator_retry,
    "regenerate": operator_regenerate,
    "repin": operator_repin,
    "reveal_now": operator_reveal_now,
    "mark_failed": operator_mark_failed,
}


def applicable_actions(token: Token) -> list[str]:
    """The actions that would apply to `token` as it is (the token page shows only these)."""
    status = token.status
    bound = in_reveal_transaction(token)
    names: list[str] = []
    if status == TokenStatus.FAILED:
        names.append("retry")
    if status in (TokenStatus.UPLOADING, TokenStatus.READY, TokenStatus.FAILED) and not bound:
        names.append("regenerate")
    if (
        token.image
        and not bound
        and (
            status == TokenStatus.READY
            or (
                status == TokenStatus.FAILED
                and token.failed_stage in (TokenStatus.UPLOADING, TokenStatus.READY)
            )
        )
    ):
        names.append("repin")
    if status == TokenStatus.READY and not bound:
        names.append("reveal_now")
    if status not in TERMINAL_STATUSES and not bound:
        names.append("mark_failed")
    return names
