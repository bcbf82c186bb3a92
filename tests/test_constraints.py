"""Every invariant PostgreSQL enforces rejects its violation (IntegrityError from the database)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from chain.models import MintEvent, RevealTransaction
from glisk.core.models import SystemState
from lifecycle.models import Token
from tests.factories import (
    AuthorFactory,
    MintEventFactory,
    RevealTransactionFactory,
    TokenFactory,
    random_hash,
)

pytestmark = pytest.mark.django_db


def rejects(fn):
    with pytest.raises(IntegrityError), transaction.atomic():
        fn()


def test_author_wallet_is_unique_case_insensitively():
    author = AuthorFactory.create()
    rejects(lambda: AuthorFactory.create(wallet_address=author.wallet_address.lower()))
    rejects(lambda: AuthorFactory.create(wallet_address="0x" + author.wallet_address[2:].upper()))


def test_author_wallet_must_look_like_an_address():
    rejects(lambda: AuthorFactory.create(wallet_address="0x1234"))


@pytest.mark.parametrize("prompt", ["", "x" * 1001])
def test_author_prompt_length_is_bounded(prompt):
    rejects(lambda: AuthorFactory.create(prompt_text=prompt))


def test_author_prompt_may_be_absent_or_up_to_1000_chars():
    AuthorFactory.create(prompt_text=None)
    AuthorFactory.create(prompt_text="y" * 1000)


def test_mint_event_log_is_unique_per_chain():
    event = MintEventFactory.create()
    rejects(
        lambda: MintEventFactory.create(
            chain_id=event.chain_id, tx_hash=event.tx_hash, log_index=event.log_index
        )
    )
    MintEventFactory.create(
        chain_id=8453, tx_hash=event.tx_hash, log_index=event.log_index
    )  # other chain: fine
    MintEventFactory.create(chain_id=event.chain_id, tx_hash=event.tx_hash, log_index=event.log_index + 1)


def test_mint_event_tx_hash_is_lower_case_with_prefix():
    rejects(lambda: MintEventFactory.create(tx_hash=random_hash()[2:]))
    rejects(lambda: MintEventFactory.create(tx_hash=random_hash().upper().replace("0X", "0x")))


def test_mint_event_wei_amounts_are_exact_uint256():
    big = 2**256 - 1
    event = MintEventFactory.create(total_paid_wei=big)
    assert int(MintEvent.objects.get(pk=event.pk).total_paid_wei) == big
    rejects(lambda: MintEventFactory.create(total_paid_wei=-1))
    rejects(lambda: MintEventFactory.create(quantity=0))


def test_token_id_is_unique():
    token = TokenFactory.create()
    rejects(lambda: Token.objects.create(token_id=token.token_id, author=token.author))


def test_token_status_must_be_known():
    rejects(lambda: TokenFactory.create(status="lost"))


def test_reveal_tx_hash_is_unique():
    tx = RevealTransactionFactory.create()
    rejects(lambda: RevealTransactionFactory.create(tx_hash=tx.tx_hash))


def test_one_active_reveal_transaction_per_keeper_nonce():
    tx = RevealTransactionFactory.create(status=RevealTransaction.Status.SENT)
    rejects(
        lambda: RevealTransactionFactory.create(
            keeper_address=tx.keeper_address, nonce=tx.nonce, status=RevealTransaction.Status.SIGNED
        )
    )
    # A replacement is allowed once the one it replaces is retired.
    RevealTransaction.objects.filter(pk=tx.pk).update(status=RevealTransaction.Status.REPLACED)
    RevealTransactionFactory.create(keeper_address=tx.keeper_address, nonce=tx.nonce, replaces=tx)


def test_reveal_wei_fields_are_exact():
    tx = RevealTransactionFactory.create(effective_gas_price_wei=10**30 + 7, gas_used=21_000)
    tx.refresh_from_db()
    assert tx.cost_wei == 21_000 * (10**30 + 7)


def test_system_state_key_is_unique():
    SystemState.objects.create(key="watcher.cursor", value={"block": 1})
    rejects(lambda: SystemState.objects.create(key="watcher.cursor", value={"block": 2}))


def test_timestamps_are_aware_utc():
    token = TokenFactory.create()
    token.refresh_from_db()
    assert token.created_at.utcoffset().total_seconds() == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'lifecycle_token' AND column_name = 'created_at'"
        )
        assert cursor.fetchone()[0] == "timestamp with time zone"


def test_queue_index_exists():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'token_queue_idx'")
        (definition,) = cursor.fetchone()
    assert "(status, next_attempt_at, token_id)" in definition  # the claim's ORDER BY, no sort
