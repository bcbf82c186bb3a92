"""The keeper racing operators and other keepers, with real threads, PostgreSQL and anvil.

An RPC proxy in front of anvil runs the competing action from its own thread (and its own
database connection) at an exact point of the keeper's conversation with the node: while the
keeper estimates gas (after its pre-check, before it stores and binds the batch) or while it
broadcasts (after binding). Every row is committed, as in production.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from eth_account import Account

from authors.services import authors_ensure
from chain.adapter import GliskChain
from chain.models import RevealTransaction
from chain.services.keeper import Keeper, KeeperReport, reveal_run
from glisk.devtools import devnet
from lifecycle.models import Token
from lifecycle.services.operator import ActionRefused, operator_mark_failed, operator_regenerate
from lifecycle.services.reveals import BatchChanged
from tests.factories import TokenFactory
from tests.standins.rpc_proxy import RpcProxy

pytestmark = pytest.mark.django_db(transaction=True)


def cid(n: int) -> str:
    return f"bafkreiracecid{n:04d}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture
def proxy(chain):
    server = RpcProxy(chain._rpc_url).start()
    yield server
    server.stop()


@pytest.fixture
def proxied(chain, proxy):
    """The same contract, reached through the proxy."""
    return GliskChain(rpc_url=proxy.url, contract_address=chain.contract_address, chain_id=chain.chain_id)


@pytest.fixture
def fast(settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_wait_seconds=0.0)


def ready_tokens(chain, accounts, quantity):
    start = chain.next_token_id()
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=quantity)
    author = authors_ensure(wallets=[accounts[3]])[0][accounts[3].lower()]
    return [
        TokenFactory.create(
            token_id=i,
            author=author,
            status="ready",
            image="images/x.png",
            metadata_cid=cid(i),
            status_changed_at=timezone.now() - timedelta(seconds=60),
        ).pk
        for i in range(start, start + quantity)
    ]


def once_at(method: str, action):
    """A proxy hook that runs `action` (in the proxy's thread) the first time `method` is called."""
    outcome: dict[str, object] = {}

    def hook(methods: list[str]) -> None:
        if method in methods and "ran" not in outcome:
            outcome["ran"] = True
            try:
                outcome["result"] = action()
            except Exception as exc:
                outcome["error"] = exc
            finally:
                connections.close_all()  # this thread's connection only

    return hook, outcome


def run(keeper):
    report = reveal_run(keeper=keeper, budget_seconds=15, poll_seconds=0.01)
    assert report is not None
    return report


@pytest.mark.parametrize("action", [operator_regenerate, operator_mark_failed])
def test_an_operator_action_during_the_pre_check_keeps_the_token_off_chain_and_due_again(
    chain, proxied, proxy, accounts, fast, settings, action
):
    ids = ready_tokens(chain, accounts, 4)
    target = ids[1]
    hook, outcome = once_at(
        "eth_estimateGas", lambda: action(token_id=target, operator="ops", reason="looks wrong")
    )
    proxy.before = hook
    keeper = Keeper(chain=proxied, private_key=settings.GLISK.keeper_private_key)
    report = run(keeper)

    assert "error" not in outcome, outcome  # the operator was not refused: they were first
    assert report.batches_changed == 1  # the keeper's binding saw the change and stored nothing
    # The others went out in one transaction without the token; the chain never revealed it.
    (tx,) = RevealTransaction.objects.all()
    assert tx.status == "confirmed" and target not in tx.token_ids and len(tx.token_ids) == 3
    assert not chain.token_states([target])[target].revealed
    token = Token.objects.get(pk=target)
    assert token.reveal_transaction_id is None
    if action is operator_regenerate:
        assert token.status == "generating" and token.metadata_cid == ""
        # Once its new image is pinned it is revealed with the new metadata.
        Token.objects.filter(pk=target).update(status="ready", metadata_cid=cid(900))
        proxy.before = None
        run(keeper)
        state = chain.token_states([target])[target]
        assert state.revealed and state.token_uri == f"ipfs://{cid(900)}"
        assert Token.objects.get(pk=target).status == "revealed"
    else:
        assert token.status == "failed" and "marked failed by ops" in token.last_error


def test_an_operator_action_after_binding_is_refused_with_the_transaction(
    chain, proxied, proxy, accounts, fast, settings
):
    ids = ready_tokens(chain, accounts, 3)
    hook, outcome = once_at(
        "eth_sendRawTransaction",
        lambda: operator_regenerate(token_id=ids[0], operator="ops", reason="too late"),
    )
    proxy.before = hook
    keeper = Keeper(chain=proxied, private_key=settings.GLISK.keeper_private_key)
    run(keeper)

    tx = RevealTransaction.objects.get()
    error = outcome["error"]
    assert isinstance(error, ActionRefused) and tx.tx_hash in str(error)
    assert set(Token.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"revealed"}
    assert chain.token_states([ids[0]])[ids[0]].token_uri == f"ipfs://{cid(ids[0])}"


def second_keeper(chain, accounts) -> str:
    """Another key with KEEPER_ROLE (a key rotation in progress); returns its private key."""
    key = "0x" + secrets.token_hex(32)
    address = Account.from_key(key).address
    devnet.fund(chain, address)
    devnet.grant_keeper_role(chain, admin=accounts[0], keeper=address)
    return key


def test_two_keepers_with_different_keys_send_one_transaction_between_them(
    chain, proxied, proxy, accounts, fast, settings
):
    ids = ready_tokens(chain, accounts, 5)
    other = Keeper(chain=proxied, private_key=second_keeper(chain, accounts))
    # While the first keeper estimates its batch, the second one runs in full.
    hook, outcome = once_at("eth_estimateGas", lambda: reveal_run(keeper=other, budget_seconds=5))
    proxy.before = hook
    first = Keeper(chain=proxied, private_key=settings.GLISK.keeper_private_key)
    assert first.address != other.address
    report = run(first)

    assert "error" not in outcome, outcome
    assert outcome["result"] is None  # the contract has one sender at a time, whatever its key
    assert report.sent == 1
    (tx,) = RevealTransaction.objects.all()
    assert tx.status == "confirmed" and tx.keeper_address == first.address and tx.token_ids == ids
    assert set(Token.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"revealed"}


def test_a_batch_bound_to_one_transaction_cannot_be_bound_to_another(chain, accounts, fast, settings):
    ready_tokens(chain, accounts, 2)
    first = Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key)
    other = Keeper(chain=chain, private_key=second_keeper(chain, accounts))
    batch = first.due_batch()
    first.sign_and_store(batch)
    with pytest.raises(BatchChanged, match="in another reveal transaction"):
        other.sign_and_store(batch)
    assert RevealTransaction.objects.count() == 1  # the refused one was rolled back with its binding


def test_the_in_flight_transaction_of_another_key_is_resolved_not_duplicated(chain, accounts, fast, settings):
    ids = ready_tokens(chain, accounts, 2)
    first = Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key)
    row = first.sign_and_store(first.due_batch())
    first.broadcast(row)  # …and the first keeper's cluster is gone for good
    other = Keeper(chain=chain, private_key=second_keeper(chain, accounts))
    report = KeeperReport()
    assert other.step(report) == "idle"  # nothing of its own to send, the other's confirmed
    assert report.confirmed == 1 and report.sent == 0
    assert RevealTransaction.objects.get().status == "confirmed"
    assert set(Token.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"revealed"}


GWEI = 10**9


def spike_base_fee(chain) -> None:
    """The base fee jumps far above what stored bytes offer (a block is mined at the new fee)."""
    base = int(chain.get_block("latest")["baseFeePerGas"], 16)
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(max(20 * base, 500 * GWEI))])
    chain.rpc("evm_mine")


def test_another_keys_refused_transaction_does_not_halt_the_new_key(chain, accounts, fast, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, transaction_timeout_seconds=1)
    old_ids = ready_tokens(chain, accounts, 2)
    old = Keeper(chain=chain, private_key=second_keeper(chain, accounts))
    old.sign_and_store(old.due_batch())  # …and its cluster dies before broadcasting
    spike_base_fee(chain)
    new_ids = ready_tokens(chain, accounts, 3)
    new = Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key)
    RevealTransaction.objects.update(created_at=timezone.now() - timedelta(seconds=5))
    report = run(new)

    # The new key sent what it could at once, released the old key's refused batch, and sent it.
    assert report.failed_tokens == 0
    assert set(Token.objects.filter(pk__in=old_ids + new_ids).values_list("status", flat=True)) == {
        "revealed"
    }
    abandoned = RevealTransaction.objects.get(keeper_address=old.address)
    assert abandoned.status == "failed" and "refuses its bytes" in abandoned.error
    mine = RevealTransaction.objects.filter(keeper_address=new.address, status="confirmed")
    assert sorted(i for tx in mine for i in tx.token_ids) == sorted(old_ids + new_ids)
    states = chain.token_states(old_ids + new_ids)
    assert all(states[i].revealed for i in old_ids + new_ids)


def test_own_bytes_refused_after_a_fee_spike_are_replaced_with_todays_fees(chain, accounts, fast, settings):
    ids = ready_tokens(chain, accounts, 2)
    keeper = Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key)
    stale = keeper.sign_and_store(keeper.due_batch())  # …and the keeper crashed before broadcasting
    spike_base_fee(chain)
    report = run(keeper)
    assert report.replaced == 1 and report.confirmed == 1
    stale.refresh_from_db()
    confirmed = RevealTransaction.objects.get(status="confirmed")
    assert stale.status == "replaced" and confirmed.replaces_id == stale.pk and confirmed.nonce == stale.nonce
    assert set(Token.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"revealed"}


@pytest.mark.django_db(transaction=True)
def test_an_operator_waiting_on_a_token_the_keeper_binds_is_refused_with_the_transaction():
    """Found by the chaos suite (scenario 8): the operator's locking read joined the token's reveal
    transaction. When the keeper bound the token while the operator waited for its row lock,
    PostgreSQL re-read the token but kept the join's empty side, and the refusal crashed on a
    token that named a transaction it did not carry."""
    import threading
    import time

    from django.db import transaction

    from tests.factories import RevealTransactionFactory

    token = TokenFactory.create(status="ready", metadata_cid="bafkmeta")
    locked, outcome = threading.Event(), {}

    def keeper_binds() -> None:
        try:
            with transaction.atomic():
                Token.objects.select_for_update().get(pk=token.pk)
                locked.set()
                time.sleep(0.5)  # the operator's read waits for this row meanwhile
                tx = RevealTransactionFactory.create(token_ids=[token.pk])
                Token.objects.filter(pk=token.pk).update(reveal_transaction=tx)
                outcome["tx"] = tx.tx_hash
        finally:
            locked.set()
            connections.close_all()

    def operator_acts() -> None:
        try:
            locked.wait(5)
            operator_regenerate(token_id=token.pk, operator="op", reason="looks wrong")
            outcome["operator"] = "applied"
        except ActionRefused as exc:
            outcome["operator"] = str(exc)
        except Exception as exc:
            outcome["operator"] = f"crashed: {exc!r}"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=keeper_binds), threading.Thread(target=operator_acts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert outcome["tx"] in outcome["operator"] and "cannot be regenerated" in outcome["operator"]
