"""Operator actions on tokens. Each one checks the token's state, changes it through the state
machine (so it lands in the timeline with the operator's name and reason), and nudges the stage
that has work now. A refused action raises `ActionRefused` with the reason and changes nothing.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from lifecycle.models import TERMINAL_STATUSES, Token, TokenStatus
from lifecycle.nudge import stage_nudge
from lifecycle.services.tokens import InvalidStateTransition, token_fail, token_retry, token_transition

STAGE_OF: dict[str, str] = {
    TokenStatus.DETECTED: "image",
    TokenStatus.GENERATING: "image",
    TokenStatus.UPLOADING: "ipfs",
    TokenStatus.READY: "reveal",
}


class ActionRefused(Exception):
    """The action does not apply to the token as it is; the message says why."""


def _actor(operator: str) -> str:
    return f"operator:{operator}"


def _load(token_id: int) -> Token:
    token = Token.objects.filter(pk=token_id).first()
    if token is None:
        raise ActionRefused(f"token #{token_id} does not exist")
    return token


def _not_in_flight(token: Token, action: str) -> None:
    if token.reveal_transaction_id is not None and token.status == TokenStatus.READY:
        raise ActionRefused(
            f"token #{token.pk} cannot be {action}: its reveal transaction is in flight; "
            "wait for it to confirm or fail"
        )


def _require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ActionRefused("a reason is required")
    return reason


def operator_retry(*, token_id: int, operator: str, reason: str) -> str:
    """Send a failed token back to the stage that failed."""
    token = _load(token_id)
    reason = _require_reason(reason)
    if token.status != TokenStatus.FAILED:
        raise ActionRefused(f"token #{token_id} is {token.status}, not failed: nothing to retry")
    with transaction.atomic():
        stage = token_retry(token_id=token_id, actor=_actor(operator), reason=reason)
        stage_nudge(stage=STAGE_OF[stage])
    return f"token #{token_id} goes back to {stage}"


def operator_regenerate(*, token_id: int, operator: str, reason: str) -> str:
    """Generate a new image (before reveal only): back to `generating` with a fresh prompt."""
    token = _load(token_id)
    reason = _require_reason(reason)
    if token.status == TokenStatus.REVEALED:
        raise ActionRefused(f"token #{token_id} is revealed on chain; its image can no longer change")
    if token.status in (TokenStatus.DETECTED, TokenStatus.GENERATING):
        raise ActionRefused(f"token #{token_id} is {token.status}: its image is being made already")
    _not_in_flight(token, "regenerated")
    fields = {
        "image": "",
        "image_content_type": "",
        "image_cid": "",
        "metadata_cid": "",
        "metadata": None,
        "prompt_text": "",
        "fallback_prompt_used": False,
        "image_attempts": 0,
        "ipfs_attempts": 0,
        "next_attempt_at": timezone.now(),
        "failed_stage": "",
        "reveal_requested_at": None,
    }
    with transaction.atomic():
        if token.status == TokenStatus.FAILED:
            token_transition(
                token_id=token_id,
                to=TokenStatus.GENERATING,
                actor=_actor(operator),
                reason=f"regenerate: {reason}",
                sources=[TokenStatus.FAILED],
                fields=fields,
            )
        else:
            token_transition(
                token_id=token_id,
                to=TokenStatus.GENERATING,
                actor=_actor(operator),
                reason=f"regenerate: {reason}",
                sources=[TokenStatus.UPLOADING, TokenStatus.READY],
                fields=fields,
            )
        stage_nudge(stage="image")
    return f"token #{token_id} will get a new image"


def operator_repin(*, token_id: int, operator: str, reason: str) -> str:
    """Pin the stored image and metadata again (before reveal only)."""
    token = _load(token_id)
    reason = _require_reason(reason)
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
    _not_in_flight(token, "re-pinned")
    with transaction.atomic():
        token_transition(
            token_id=token_id,
            to=TokenStatus.UPLOADING,
            actor=_actor(operator),
            reason=f"re-pin: {reason}",
            sources=[TokenStatus.READY, TokenStatus.FAILED],
            fields={
                "image_cid": "",
                "metadata_cid": "",
                "metadata": None,
                "ipfs_attempts": 0,
                "failed_stage": "",
                "next_attempt_at": timezone.now(),
            },
        )
        stage_nudge(stage="ipfs")
    return f"token #{token_id} will be pinned again"


def operator_reveal_now(*, token_id: int, operator: str, reason: str) -> str:
    """Reveal a ready token without waiting for its batch to fill."""
    token = _load(token_id)
    reason = _require_reason(reason)
    if token.status != TokenStatus.READY:
        raise ActionRefused(f"token #{token_id} is {token.status}: only ready tokens can be revealed")
    _not_in_flight(token, "revealed again")
    with transaction.atomic():
        Token.objects.filter(pk=token_id, status=TokenStatus.READY).update(
            reveal_requested_at=timezone.now(), next_attempt_at=timezone.now()
        )
        from lifecycle.models import TokenTransition

        TokenTransition.objects.create(
            token_id=token_id,
            from_status=token.status,
            to_status=token.status,
            actor=_actor(operator),
            reason=f"reveal now: {reason}",
        )
        stage_nudge(stage="reveal")
    return f"token #{token_id} will be revealed in the next transaction"


def operator_mark_failed(*, token_id: int, operator: str, reason: str) -> str:
    """Stop a token's pipeline with a reason (an operator can retry it later)."""
    token = _load(token_id)
    reason = _require_reason(reason)
    if token.status in TERMINAL_STATUSES:
        raise ActionRefused(f"token #{token_id} is {token.status} already")
    _not_in_flight(token, "marked failed")
    try:
        token_fail(token_id=token_id, actor=_actor(operator), reason=f"marked failed by {operator}: {reason}")
    except InvalidStateTransition as exc:
        raise ActionRefused(str(exc)) from None
    return f"token #{token_id} is marked failed"


ACTIONS = {
    "retry": operator_retry,
    "regenerate": operator_regenerate,
    "repin": operator_repin,
    "reveal_now": operator_reveal_now,
    "mark_failed": operator_mark_failed,
}


def applicable_actions(token: Token) -> list[str]:
    """The actions that would apply to `token` as it is (the token page shows only these)."""
    status = token.status
    in_flight = token.reveal_transaction_id is not None and status == TokenStatus.READY
    names: list[str] = []
    if status == TokenStatus.FAILED:
        names.append("retry")
    if status in (TokenStatus.UPLOADING, TokenStatus.READY, TokenStatus.FAILED) and not in_flight:
        names.append("regenerate")
    if (
        token.image
        and not in_flight
        and (
            status == TokenStatus.READY
            or (
                status == TokenStatus.FAILED
                and token.failed_stage in (TokenStatus.UPLOADING, TokenStatus.READY)
            )
        )
    ):
        names.append("repin")
    if status == TokenStatus.READY and not in_flight:
        names.append("reveal_now")
    if status not in TERMINAL_STATUSES and not in_flight:
        names.append("mark_failed")
    return names
