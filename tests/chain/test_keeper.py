from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from eth_account import Account

from authors.services import authors_ensure
from chain.models import RevealTransaction
from chain.services.fees import FeesAboveCap
from chain.services.keeper import Keeper, KeeperReport, reveal_run
from glisk.devtools import devnet
from lifecycle.models import Token, TokenTransition
from tests.chain.helpers import reveal_on_chain
from tests.factories import AuthorFactory, TokenFactory

pytestmark = pytest.mark.django_db


def cid(n):
    return f"bafkreitestcid{n:04d}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture
def keeper(chain, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_wait_seconds=0.0)
    return Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key)


def ready_tokens(chain, accounts, quantity, *, author_wallet=None):
    """Mint on anvil and mirror the tokens in the database as `ready`."""
    wallet = author_wallet or accounts[3]
    start = chain.next_token_id()
    devnet.mint(chain, minter=accounts[2], prompt_author=wallet, quantity=quantity)
    author = authors_ensure(wallets=[wallet])[0][wallet.lower()]
    return [
        TokenFactory.create(
            token_id=i,
            author=author,
            status="ready",
            metadata_cid=cid(i),
            status_changed_at=timezone.now() - timedelta(seconds=60),
        )
        for i in range(start, start + quantity)
    ]


def run(keeper, **kwargs):
    report = reveal_run(keeper=keeper, budget_seconds=10, poll_seconds=0.01, **kwargs)
    assert report is not None
    return report


def keeper_nonce(chain, keeper):
    return int(chain.rpc("eth_getTransactionCount", [keeper.address, "latest"]), 16)


def test_ready_tokens_are_revealed_in_one_batched_transaction(chain, accounts, keeper):
    tokens = ready_tokens(chain, accounts, 5)
    report = run(keeper)
    assert (report.sent, report.confirmed, report.tokens_revealed) == (1, 1, 5)
    tx = RevealTransaction.objects.get()
    assert tx.status == "confirmed" and tx.token_ids == [t.pk for t in tokens]
    assert tx.gas_used > 0 and tx.effective_gas_price_wei > 0 and tx.block_number
    assert tx.gas_limit >= tx.gas_used
    states = chain.token_states([t.pk for t in tokens])
    for token in tokens:
        token.refresh_from_db()
        assert token.status == "revealed" and token.reveal_transaction_id == tx.pk
        assert states[token.pk].revealed and states[token.pk].token_uri == f"ipfs://{token.metadata_cid}"


def test_batches_are_bounded_by_the_max(chain, accounts, keeper, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_max_tokens=4)
    keeper.config = settings.GLISK
    ready_tokens(chain, accounts, 10)
    run(keeper)
    assert sorted(len(t.token_ids) for t in RevealTransaction.objects.all()) == [2, 4, 4]
    assert Token.objects.filter(status="revealed").count() == 10


def test_a_batch_waits_until_full_or_old_enough(chain, accounts, keeper, settings):
    settings.GLISK = dataclasses.replace(
        settings.GLISK, batch_reveal_wait_seconds=30.0, batch_reveal_max_tokens=5
    )
    keeper.config = settings.GLISK
    tokens = ready_tokens(chain, accounts, 3)
    Token.objects.update(status_changed_at=timezone.now() - timedelta(seconds=20))
    assert keeper.due_batch() == []
    assert 9 < keeper.due_in <= 10  # the keeper sleeps until then, not a whole poll past it
    Token.objects.filter(pk=tokens[0].pk).update(status_changed_at=timezone.now() - timedelta(seconds=31))
    assert len(keeper.due_batch()) == 3
    assert keeper.due_in is None
    Token.objects.update(status_changed_at=timezone.now())
    ready_tokens(chain, accounts, 2)
    Token.objects.update(status_changed_at=timezone.now())
    assert len(keeper.due_batch()) == 5  # full
    assert len(keeper.due_batch(force=True)) == 5


def test_token_already_revealed_on_chain_is_synced_without_a_transaction(chain, accounts, keeper):
    tokens = ready_tokens(chain, accounts, 3)
    reveal_on_chain(chain, accounts[0], [tokens[1].pk], [f"ipfs://{cid(999)}"])
    nonce_before = keeper_nonce(chain, keeper)
    report = run(keeper)
    assert report.synced_without_tx == 1
    synced = Token.objects.get(pk=tokens[1].pk)
    assert (
        synced.status == "revealed" and synced.reveal_transaction is None and synced.metadata_cid == cid(999)
    )
    assert TokenTransition.objects.filter(
        token=synced, reason__contains="synced without a transaction"
    ).exists()
    (tx,) = RevealTransaction.objects.all()
    assert tx.token_ids == [tokens[0].pk, tokens[2].pk] and tx.status == "confirmed"
    assert keeper_nonce(chain, keeper) == nonce_before + 1
    assert not RevealTransaction.objects.filter(status="failed").exists()


def test_author_mismatch_holds_that_token_back_and_says_so(chain, accounts, keeper):
    tokens = ready_tokens(chain, accounts, 2)
    impostor = AuthorFactory.create()
    Token.objects.filter(pk=tokens[0].pk).update(author=impostor)
    report = run(keeper)
    assert (report.disputed_tokens, report.failed_tokens) == (1, 0)
    held = Token.objects.get(pk=tokens[0].pk)
    assert held.status == "ready" and held.mint_disputed_at is not None
    assert "author mismatch" in held.last_error and accounts[3] in held.last_error
    assert RevealTransaction.objects.get().token_ids == [tokens[1].pk]


def test_token_missing_on_chain_fails_instead_of_reverting(chain, accounts, keeper):
    author = AuthorFactory.create(wallet_address=accounts[3])
    TokenFactory.create(
        token_id=500,
        author=author,
        status="ready",
        metadata_cid=cid(500),
        status_changed_at=timezone.now() - timedelta(seconds=60),
    )
    run(keeper)
    token = Token.objects.get(pk=500)
    assert token.status == "failed" and "not on chain" in token.last_error
    assert not RevealTransaction.objects.exists()


def test_crash_after_broadcast_before_receipt_needs_no_second_transaction(chain, accounts, keeper):
    tokens = ready_tokens(chain, accounts, 4)
    # The first keeper signs, stores and broadcasts, then dies before looking at the receipt.
    row = keeper.sign_and_store(keeper.due_batch())
    keeper.broadcast(row)
    nonce_after_first = keeper_nonce(chain, keeper)
    # A new keeper process starts.
    fresh = Keeper(chain=chain, private_key=keeper.config.keeper_private_key)
    report = run(fresh)
    assert report.sent == 0 and report.confirmed == 1
    assert RevealTransaction.objects.count() == 1 and RevealTransaction.objects.get().status == "confirmed"
    assert keeper_nonce(chain, keeper) == nonce_after_first
    assert set(Token.objects.values_list("status", flat=True)) == {"revealed"}
    assert len(tokens) == 4


def test_crash_after_signing_before_broadcast_sends_the_stored_bytes(chain, accounts, keeper):
    ready_tokens(chain, accounts, 2)
    row = keeper.sign_and_store(keeper.due_batch())
    report = run(keeper)
    assert report.sent == 0 and report.confirmed == 1
    assert RevealTransaction.objects.get().tx_hash == row.tx_hash


def test_dropped_transaction_is_rebroadcast_with_the_same_bytes(chain, accounts, keeper):
    ready_tokens(chain, accounts, 2)
    chain.rpc("evm_setAutomine", [False])
    try:
        row = keeper.sign_and_store(keeper.due_batch())
        keeper.broadcast(row)
        chain.rpc("anvil_dropTransaction", [row.tx_hash])
        assert chain.rpc("eth_getTransactionByHash", [row.tx_hash]) is None
        report = KeeperReport()
        assert keeper.step(report) == "waiting"
        assert report.rebroadcast == 1
        assert chain.rpc("eth_getTransactionByHash", [row.tx_hash]) is not None
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", [True])
    assert keeper.step(KeeperReport()) == "resolved"
    tx = RevealTransaction.objects.get()
    assert tx.tx_hash == row.tx_hash and tx.status == "confirmed"


def test_stuck_transaction_is_replaced_with_the_same_nonce_and_higher_fees(chain, accounts, keeper):
    ready_tokens(chain, accounts, 3)
    chain.rpc("evm_setAutomine", [False])
    try:
        row = keeper.sign_and_store(keeper.due_batch())
        keeper.broadcast(row)
        RevealTransaction.objects.filter(pk=row.pk).update(sent_at=timezone.now() - timedelta(hours=1))
        report = KeeperReport()
        assert keeper.step(report) == "waiting"
        assert report.replaced == 1
        old, new = RevealTransaction.objects.order_by("pk")
        assert old.status == "replaced" and new.replaces_id == old.pk and new.nonce == old.nonce
        assert new.max_fee_per_gas_wei > old.max_fee_per_gas_wei
        assert new.max_priority_fee_per_gas_wei > old.max_priority_fee_per_gas_wei
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", [True])
    assert keeper.step(KeeperReport()) == "resolved"
    old, new = RevealTransaction.objects.order_by("pk")
    assert new.status == "confirmed" and old.status == "replaced"
    assert set(Token.objects.values_list("reveal_transaction_id", flat=True)) == {new.pk}
    assert set(Token.objects.values_list("status", flat=True)) == {"revealed"}


def test_confirmations_are_awaited(chain, accounts, keeper, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, reveal_confirmations=3)
    keeper.config = settings.GLISK
    ready_tokens(chain, accounts, 1)
    report = KeeperReport()
    assert keeper.step(report) == "sent"
    assert keeper.step(report) == "waiting"
    assert Token.objects.get().status == "ready"
    chain.rpc("anvil_mine", ["0x2"])
    assert keeper.step(report) == "resolved"
    assert Token.objects.get().status == "revealed"


def test_fee_cap_refuses_to_send(chain, accounts, keeper, settings):
    from decimal import Decimal

    settings.GLISK = dataclasses.replace(settings.GLISK, reveal_max_fee_gwei=Decimal("0.0000001"))
    keeper.config = settings.GLISK
    ready_tokens(chain, accounts, 1)
    with pytest.raises(FeesAboveCap):
        keeper.step(KeeperReport())
    assert not RevealTransaction.objects.exists()


def test_only_one_sender_per_keeper_address(chain, keeper):
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [keeper.lock_name])
            assert cursor.fetchone()[0]
        assert reveal_run(keeper=keeper, budget_seconds=1) is None
    finally:
        other.close()


def test_keeper_key_is_never_in_reprs_or_logs(keeper, caplog, chain, accounts, settings):
    ready_tokens(chain, accounts, 1)
    run(keeper)
    key = settings.GLISK.keeper_private_key
    assert key[2:] not in caplog.text and key not in repr(keeper.__dict__)
    assert Account.from_key(key).address == keeper.address


def test_reveal_now_sends_the_chosen_token_alone(chain, accounts, keeper, settings):
    from lifecycle.services.operator import operator_reveal_now

    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_wait_seconds=3600.0)
    keeper.config = settings.GLISK
    tokens = ready_tokens(chain, accounts, 5)
    assert keeper.due_batch() == []  # the batch would wait for more tokens
    operator_reveal_now(token_id=tokens[2].pk, operator="ops", reason="collector waiting")
    assert [t.token_id for t in keeper.due_batch()] == [tokens[2].pk]
    assert keeper.step(KeeperReport()) == "sent"
    assert keeper.step(KeeperReport()) == "resolved"
    assert keeper.step(KeeperReport()) == "idle"  # the others keep waiting for their batch
    (tx,) = RevealTransaction.objects.all()
    assert tx.token_ids == [tokens[2].pk]
    assert set(Token.objects.exclude(pk=tokens[2].pk).values_list("status", flat=True)) == {"ready"}


def test_a_token_whose_state_cannot_be_read_waits_while_the_others_go(chain, accounts, keeper, settings):
    """A view call that fails for one token (not the node) must not hold back the batch."""
    from chain.errors import ChainError

    tokens = ready_tokens(chain, accounts, 3)
    poisoned = tokens[0].pk
    real = keeper.chain

    class OneBadToken:  # the node answers, but one token's calls fail (as an undecodable result does)
        def __getattr__(self, name):
            return getattr(real, name)

        def token_states(self, ids):
            states = real.token_states(ids)
            if poisoned in states:
                states[poisoned] = ChainError(f"undecodable view result for token {poisoned}")
            return states

    keeper.chain = OneBadToken()
    report = run(keeper)
    assert report.sent == 1
    (tx,) = RevealTransaction.objects.all()
    assert poisoned not in tx.token_ids and len(tx.token_ids) == 2
    waiting = Token.objects.get(pk=poisoned)
    assert (
        waiting.status == "ready"
        and waiting.reveal_attempts >= 1
        and "could not be read" in waiting.last_error
    )


def test_the_keeper_records_its_funds_for_the_low_balance_alert(chain, accounts, keeper, client):
    from glisk.core.state import state_get

    ready_tokens(chain, accounts, 3)
    run(keeper)
    funds = state_get(key="keeper.funds")
    balance = chain.balance(keeper.address)
    assert funds["address"] == keeper.address and abs(int(funds["balance_wei"]) - balance) < 10**16
    cost = int(funds["reveal_cost_wei"])
    assert cost > 0 and funds["reveals_affordable"] == int(funds["balance_wei"]) // cost
    metrics = client.get("/metrics").content.decode()
    assert f"glisk_keeper_reveals_affordable {float(funds['reveals_affordable'])}" in metrics
    # Checked at most once a minute: a second run within it reads nothing more.
    before = funds["at"]
    keeper.record_funds()
    assert state_get(key="keeper.funds")["at"] == before
    # Emptied: nothing left to pay with (the cost now from the confirmed reveal's gas).
    chain.rpc("anvil_setBalance", [keeper.address, hex(10**9)])
    keeper.record_funds(every=timedelta(0))
    funds = state_get(key="keeper.funds")
    assert funds["reveals_affordable"] == 0 and int(funds["reveal_cost_wei"]) < cost


def test_a_fee_above_the_cap_does_not_keep_the_keeper_from_confirming_what_it_sent(
    chain, accounts, keeper, settings
):
    """Found in review: the funds check (which reads the fee) ran before every step and its
    FeesAboveCap stopped the step, so a reveal already sent was never confirmed."""
    from decimal import Decimal

    ready_tokens(chain, accounts, 2)
    assert keeper.step(KeeperReport()) == "sent"
    chain.rpc("anvil_mine", ["0x2"])
    settings.GLISK = dataclasses.replace(settings.GLISK, reveal_max_fee_gwei=Decimal("0.0000001"))
    keeper.config = settings.GLISK
    report = run(keeper)
    assert RevealTransaction.objects.get().status == "confirmed"
    assert set(Token.objects.values_list("status", flat=True)) == {"revealed"}
    assert report.confirmed == 1
