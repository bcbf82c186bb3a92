from __future__ import annotations

import itertools

import pytest

from lifecycle.models import ALLOWED_TRANSITIONS, RETRYABLE_STAGES, Token, TokenStatus, TokenTransition
from lifecycle.services.tokens import (
    InvalidStateTransition,
    LeaseLost,
    token_fail,
    token_retry,
    token_transition,
    tokens_transition,
)
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db

S = TokenStatus
HAPPY_PATH = [S.DETECTED, S.GENERATING, S.UPLOADING, S.READY, S.REVEALED]


def test_happy_path_writes_one_history_row_per_transition():
    token = TokenFactory.create(status=S.DETECTED)
    for to in HAPPY_PATH[1:]:
        fields = {"metadata_cid": "bafkreiabc"} if to == S.READY else None
        token_transition(token_id=token.pk, to=to, actor="stage:test", reason=f"to {to}", fields=fields)
    token.refresh_from_db()
    assert token.status == S.REVEALED
    assert token.revealed_at is not None
    history = list(
        TokenTransition.objects.filter(token=token).values_list("from_status", "to_status", "actor")
    )
    assert history == [(a, b, "stage:test") for a, b in itertools.pairwise(HAPPY_PATH)]


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (S.DETECTED, S.UPLOADING),
        (S.DETECTED, S.READY),
        (S.GENERATING, S.READY),
        (S.UPLOADING, S.UPLOADING),
        (S.REVEALED, S.FAILED),
        (S.REVEALED, S.DETECTED),
        (S.FAILED, S.FAILED),
    ],
)
def test_invalid_transition_raises_naming_both_states_and_changes_nothing(current, wanted):
    token = TokenFactory.create(status=current)
    with pytest.raises(InvalidStateTransition) as excinfo:
        token_transition(token_id=token.pk, to=wanted, actor="stage:test")
    assert excinfo.value.current == current
    assert excinfo.value.wanted == wanted
    assert str(current) in str(excinfo.value)
    assert str(wanted) in str(excinfo.value)
    token.refresh_from_db()
    assert token.status == current
    assert not TokenTransition.objects.filter(token=token).exists()


def test_explicit_sources_restrict_the_compare_and_swap():
    token = TokenFactory.create(status=S.GENERATING)
    with pytest.raises(InvalidStateTransition):
        token_transition(token_id=token.pk, to=S.FAILED, actor="x", sources=[S.DETECTED])
    assert Token.objects.get(pk=token.pk).status == S.GENERATING


def test_sources_outside_the_map_are_a_programming_error():
    token = TokenFactory.create(status=S.DETECTED)
    with pytest.raises(ValueError, match="ALLOWED_TRANSITIONS"):
        token_transition(token_id=token.pk, to=S.READY, actor="x", sources=[S.DETECTED])


def test_missing_token_is_named():
    with pytest.raises(InvalidStateTransition, match="does not exist"):
        token_transition(token_id=999_999, to=S.GENERATING, actor="x")


@pytest.mark.parametrize("terminal", [S.REVEALED])
def test_revealed_is_terminal(terminal):
    assert ALLOWED_TRANSITIONS[terminal] == frozenset()


@pytest.mark.parametrize("stage", sorted(RETRYABLE_STAGES))
def test_failed_from_every_stage_then_retry_returns_to_that_stage(stage):
    token = TokenFactory.create(status=stage, image_attempts=3, ipfs_attempts=2, reveal_attempts=1)
    token_fail(token_id=token.pk, actor="stage:test", reason="provider said no", detail={"status": 401})
    token.refresh_from_db()
    assert token.status == S.FAILED
    assert token.failed_stage == stage
    assert token.last_error == "provider said no"
    assert token.last_error_detail == {"status": 401}

    back_to = token_retry(token_id=token.pk, actor="operator:alice", reason="credentials fixed")
    token.refresh_from_db()
    assert back_to == stage
    assert token.status == stage
    assert token.failed_stage == ""
    assert (token.image_attempts, token.ipfs_attempts, token.reveal_attempts) == (0, 0, 0)
    last = TokenTransition.objects.filter(token=token).last()
    assert (last.from_status, last.to_status, last.actor, last.reason) == (
        S.FAILED,
        stage,
        "operator:alice",
        "credentials fixed",
    )


def test_failed_is_terminal_for_the_pipeline_but_not_for_retry():
    token = TokenFactory.create(status=S.FAILED, failed_stage=S.UPLOADING)
    # Stages name their own source status, so a failed token never re-enters the pipeline by itself.
    for source, target in ((S.DETECTED, S.GENERATING), (S.GENERATING, S.UPLOADING), (S.UPLOADING, S.READY)):
        with pytest.raises(InvalidStateTransition):
            token_transition(token_id=token.pk, to=target, actor="stage:x", sources=[source])
    assert Token.objects.get(pk=token.pk).status == S.FAILED


def test_retry_refuses_a_token_that_has_not_failed():
    token = TokenFactory.create(status=S.READY)
    with pytest.raises(InvalidStateTransition, match="is ready"):
        token_retry(token_id=token.pk, actor="operator:bob")
    assert Token.objects.get(pk=token.pk).status == S.READY


def test_revealed_cannot_fail():
    token = TokenFactory.create(status=S.REVEALED, metadata_cid="bafkreix")
    with pytest.raises(InvalidStateTransition):
        token_fail(token_id=token.pk, actor="stage:x", reason="late error")
    assert Token.objects.get(pk=token.pk).status == S.REVEALED


def test_terminal_transition_releases_the_lease():
    token = TokenFactory.create(status=S.GENERATING, claimed_by="w1")
    token_fail(token_id=token.pk, actor="stage:image", reason="boom")
    token.refresh_from_db()
    assert token.claimed_by == ""
    assert token.lease_expires_at is None


def test_fields_are_written_in_the_same_update():
    token = TokenFactory.create(status=S.UPLOADING)
    token_transition(
        token_id=token.pk,
        to=S.READY,
        actor="stage:ipfs",
        fields={"image_cid": "bafkA", "metadata_cid": "bafkB"},
    )
    token.refresh_from_db()
    assert (token.status, token.image_cid, token.metadata_cid) == (S.READY, "bafkA", "bafkB")


def test_a_stage_finishing_a_token_moved_under_it_is_told_the_status_not_a_lost_lease():
    token = TokenFactory.create(status=S.FAILED, claimed_by="")
    with pytest.raises(InvalidStateTransition) as excinfo:
        token_transition(
            token_id=token.pk, to=S.UPLOADING, actor="stage:image", sources=[S.GENERATING], lease_owner="w1"
        )
    assert not isinstance(excinfo.value, LeaseLost)
    assert excinfo.value.current == S.FAILED
    assert not TokenTransition.objects.filter(token=token).exists()


def test_a_batch_moves_the_tokens_in_a_source_status_and_names_the_others():
    ready = TokenFactory.create_batch(3, status=S.READY, metadata_cid="bafkreix")
    revealed = TokenFactory.create(status=S.REVEALED, metadata_cid="bafkreiy")
    ids = [t.pk for t in ready] + [revealed.pk, 999_999]
    left = tokens_transition(
        token_ids=ids,
        to=S.REVEALED,
        actor="stage:reveal",
        reason="revealed in 0xabc",
        sources=[S.READY],
        detail={"tx_hash": "0xabc"},
    )
    assert left == {revealed.pk: S.REVEALED, 999_999: None}
    moved = Token.objects.filter(pk__in=[t.pk for t in ready])
    assert {(t.status, t.revealed_at is not None) for t in moved} == {(S.REVEALED, True)}
    history = TokenTransition.objects.filter(token__in=ready).values_list(
        "token_id", "from_status", "to_status", "reason", "detail"
    )
    expected = [(t.pk, S.READY, S.REVEALED, "revealed in 0xabc", {"tx_hash": "0xabc"}) for t in ready]
    assert sorted(history) == expected
    assert not TokenTransition.objects.filter(token=revealed).exists()


def test_a_batch_refuses_sources_outside_the_map():
    with pytest.raises(ValueError, match="ALLOWED_TRANSITIONS"):
        tokens_transition(token_ids=[1], to=S.READY, actor="x", reason="", sources=[S.DETECTED])
