"""Lifecycle's reveal services: the only way the keeper changes tokens."""

from __future__ import annotations

import pytest

from lifecycle.models import Token, TokenTransition
from lifecycle.services.operator import ActionRefused, operator_mark_failed, operator_retry
from lifecycle.services.reveals import (
    BatchChanged,
    reveal_batch_assign,
    reveal_batch_confirm,
    reveal_batch_reassign,
    reveal_batch_release,
    token_sync_revealed,
)
from tests.factories import RevealTransactionFactory, TokenFactory

pytestmark = pytest.mark.django_db


def ready(n: int, **fields) -> Token:
    return TokenFactory.create(token_id=n, status="ready", metadata_cid=f"bafk{n}", **fields)


def test_assign_binds_every_token_or_none():
    ready(1)
    ready(2)
    tx = RevealTransactionFactory.create(token_ids=[1, 2])
    Token.objects.filter(pk=2).update(status="generating", metadata_cid="")
    with pytest.raises(BatchChanged) as refused:
        reveal_batch_assign(tokens={1: "bafk1", 2: "bafk2"}, reveal_transaction_id=tx.pk)
    assert refused.value.changed == {2: "generating"}
    assert not Token.objects.filter(reveal_transaction__isnull=False).exists()
    Token.objects.filter(pk=2).update(status="ready", metadata_cid="bafk-new")
    with pytest.raises(BatchChanged, match="new metadata"):
        reveal_batch_assign(tokens={1: "bafk1", 2: "bafk2"}, reveal_transaction_id=tx.pk)
    reveal_batch_assign(tokens={1: "bafk1", 2: "bafk-new"}, reveal_transaction_id=tx.pk)
    assert set(Token.objects.values_list("reveal_transaction_id", flat=True)) == {tx.pk}


def test_a_confirmed_reveal_repairs_a_token_the_database_had_elsewhere():
    ready(1)
    TokenFactory.create(token_id=2, status="generating", metadata_cid="")
    tx = RevealTransactionFactory.create(token_ids=[1, 2], status="confirmed")
    result = reveal_batch_confirm(
        tokens={1: "bafk1", 2: "bafk-on-chain"}, reveal_transaction_id=tx.pk, tx_hash=tx.tx_hash, block=7
    )
    assert result.revealed == 1 and result.repaired == [2]
    repaired = Token.objects.get(pk=2)
    assert repaired.status == "revealed" and repaired.metadata_cid == "bafk-on-chain"
    assert repaired.reveal_transaction_id == tx.pk
    last = TokenTransition.objects.filter(token_id=2).last()
    assert "while the database said generating" in last.reason
    assert last.detail["database_status"] == "generating" and last.detail["database_metadata_cid"] == ""


def test_release_unbinds_backs_off_and_fails_at_the_cap():
    ready(1)
    ready(2, reveal_attempts=2)
    tx = RevealTransactionFactory.create(token_ids=[1, 2], status="failed")
    Token.objects.update(reveal_transaction=tx)
    failed = reveal_batch_release(reveal_transaction_id=tx.pk, reason="reverted", max_attempts=3)
    assert failed == 1
    one, two = Token.objects.get(pk=1), Token.objects.get(pk=2)
    assert one.status == "ready" and one.reveal_transaction_id is None and one.reveal_attempts == 1
    assert one.last_error == "reverted"
    assert two.status == "failed" and two.reveal_transaction_id is None and two.failed_stage == "ready"
    # An operator's retry of the failed one leaves nothing stale behind: it is due for the keeper.
    operator_retry(token_id=2, operator="ops", reason="fees are back to normal")
    two.refresh_from_db()
    assert two.status == "ready" and two.reveal_transaction_id is None and two.reveal_attempts == 0


def test_reassign_moves_the_binding_to_the_replacement():
    ready(1)
    old = RevealTransactionFactory.create(token_ids=[1], status="replaced")
    new = RevealTransactionFactory.create(token_ids=[1])
    Token.objects.update(reveal_transaction=old)
    assert reveal_batch_reassign(from_transaction_id=old.pk, to_transaction_id=new.pk) == 1
    assert Token.objects.get(pk=1).reveal_transaction_id == new.pk


def test_a_bound_token_refuses_operator_actions_naming_the_transaction():
    ready(1)
    tx = RevealTransactionFactory.create(token_ids=[1], status="signed")
    Token.objects.update(reveal_transaction=tx)
    with pytest.raises(ActionRefused, match=f"in reveal transaction {tx.tx_hash} \\(signed\\)"):
        operator_mark_failed(token_id=1, operator="ops", reason="stop")
    assert Token.objects.get(pk=1).status == "ready"


def test_sync_records_a_different_on_chain_cid():
    ready(1)
    token_sync_revealed(token_id=1, token_uri="ipfs://bafk-chain/meta.json")
    token = Token.objects.get(pk=1)
    assert token.status == "revealed" and token.metadata_cid == "bafk-chain"
    assert "database had bafk1" in TokenTransition.objects.filter(token_id=1).last().reason
