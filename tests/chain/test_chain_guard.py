"""An RPC that serves another chain: the keeper and the watcher act on nothing and say why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chain.adapter import GliskChain
from chain.models import RevealTransaction
from chain.services.keeper import Keeper, reveal_run
from chain.services.watcher import cursor_key, watcher_run
from glisk.backoffice.selectors import dashboard_get
from glisk.core.state import state_get
from glisk.devtools import devnet
from lifecycle.models import Token
from tests.factories import AuthorFactory, TokenFactory

pytestmark = pytest.mark.django_db


def on_another_chain(chain):
    """The same node, configured as if it were Base mainnet (a mistyped RPC_URL)."""
    return GliskChain(rpc_url=chain._rpc_url, contract_address=chain.contract_address, chain_id=8453)


def test_the_keeper_and_the_watcher_act_on_nothing_on_another_chain(chain, accounts, settings, client):
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    author = AuthorFactory.create(wallet_address=accounts[3])
    for i in (1, 2):
        TokenFactory.create(
            token_id=i,
            author=author,
            status="ready",
            metadata_cid=f"bafkguard{i}",
            status_changed_at=timezone.now() - timedelta(minutes=5),
        )
    wrong = on_another_chain(chain)
    report = reveal_run(
        keeper=Keeper(chain=wrong, private_key=settings.GLISK.keeper_private_key), budget_seconds=5
    )
    assert report is not None and report.sent == 0 and report.notes == ["wrong chain"]
    assert not RevealTransaction.objects.exists()
    assert set(Token.objects.values_list("status", flat=True)) == {"ready"}
    assert watcher_run(chain=wrong, duration=1, sleep=lambda _: None) == 0
    assert state_get(key=cursor_key(wrong)) is None  # the cursor never followed the other chain

    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert "serves another chain than NETWORK expects" in health["problems"][0]
    assert "31337" not in str(health) and "8453" not in str(health)  # the ids are for staff
    assert chain._rpc_url not in str(health)
    assert any("serves chain 31337" in e for e in dashboard_get(with_chain=False).errors)

    # Fixed: the next run works and the problem is gone.
    right = reveal_run(
        keeper=Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key), budget_seconds=10
    )
    assert right is not None and right.sent == 1
    assert set(Token.objects.values_list("status", flat=True)) == {"revealed"}
    assert client.get("/health").json() == {"status": "healthy"}


@pytest.fixture
def other_chain():
    """Another node with another chain id (Base's), further ahead than ours."""
    port = devnet.free_port()
    process = devnet.start_anvil(port=port, chain_id=8453)
    try:
        other = GliskChain(rpc_url=f"http://127.0.0.1:{port}", contract_address="", chain_id=8453)
        other.rpc("anvil_mine", [hex(300)])
        yield other
    finally:
        devnet.stop_process(process)


@pytest.fixture
def proxy(chain):
    from tests.standins.rpc_proxy import RpcProxy

    server = RpcProxy(chain._rpc_url).start()
    yield server
    server.stop()


def test_an_rpc_swapped_for_another_chain_mid_run_moves_no_cursor_and_the_watcher_resumes(
    chain, accounts, settings, proxy, other_chain, caplog
):
    ours = chain._rpc_url
    proxied = GliskChain(rpc_url=proxy.url, contract_address=chain.contract_address, chain_id=chain.chain_id)
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    chain.rpc("anvil_mine", [hex(settings.GLISK.watcher_confirmations)])
    assert other_chain.block_number() > chain.block_number() + 50  # a cursor that followed it would show
    seen_while_swapped: list[object] = []
    naps = 0

    def sleep(_seconds: float) -> None:
        nonlocal naps
        naps += 1
        if naps == 1:  # caught up with our chain: the RPC now points elsewhere
            proxy.upstream = other_chain._rpc_url
        elif naps == 4:
            seen_while_swapped.append(state_get(key="chain.wrong_chain"))
            proxy.upstream = ours  # put back; a mint happened meanwhile
            devnet.mint(chain, minter=accounts[2], prompt_author=accounts[4], quantity=1)
            chain.rpc("anvil_mine", [hex(settings.GLISK.watcher_confirmations)])
        elif naps > 8:
            raise TimeoutError

    with caplog.at_level("ERROR", logger="chain.services.guard"), pytest.raises(TimeoutError):
        watcher_run(chain=proxied, duration=60, poll_seconds=0.01, sleep=sleep)
    cursor = state_get(key=cursor_key(proxied))["block"]
    assert cursor <= chain.block_number()  # never the other chain's 300
    assert sorted(Token.objects.values_list("token_id", flat=True)) == [1, 2, 3]
    assert seen_while_swapped[0]["actual"] == 8453
    assert state_get(key="chain.wrong_chain") is None  # cleared once the chain was right again
    assert [r.getMessage() for r in caplog.records].count("chain.wrong_chain") == 1  # once per run


def test_the_keeper_sends_nothing_while_the_rpc_serves_another_chain_and_resumes_after(
    chain, accounts, settings, proxy, other_chain
):
    from eth_account import Account

    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    author = AuthorFactory.create(wallet_address=accounts[3])
    for i in (1, 2):
        TokenFactory.create(
            token_id=i,
            author=author,
            status="ready",
            metadata_cid=f"bafkswap{i}",
            status_changed_at=timezone.now() - timedelta(minutes=5),
        )
    proxy.upstream = other_chain._rpc_url
    proxied = GliskChain(rpc_url=proxy.url, contract_address=chain.contract_address, chain_id=chain.chain_id)
    keeper = Keeper(chain=proxied, private_key=settings.GLISK.keeper_private_key)
    naps: list[float] = []
    # A run that starts on another chain ends at once (freeing the sender's lock), sending nothing.
    report = reveal_run(keeper=keeper, budget_seconds=20, poll_seconds=0.01, sleep=naps.append)
    assert report is not None and report.sent == 0 and report.notes == ["wrong chain"] and naps == []
    assert not RevealTransaction.objects.exists()
    proxy.upstream = chain._rpc_url  # put back: the next run sends
    report = reveal_run(keeper=keeper, budget_seconds=20, poll_seconds=0.01)
    assert report is not None and report.sent == 1 and report.notes == []
    assert set(Token.objects.values_list("status", flat=True)) == {"revealed"}
    sender = Account.from_key(settings.GLISK.keeper_private_key).address
    assert other_chain.transaction_count(sender) == 0  # nothing was ever sent to the other chain


def test_a_cluster_on_another_chain_does_not_keep_the_lock_from_a_healthy_one(chain, settings, other_chain):
    """Clusters on several machines share the keeper's and the watcher's one-per-contract locks: a
    cluster whose RPC_URL names another chain gives them up at once instead of holding them."""
    import time

    misconfigured = GliskChain(
        rpc_url=other_chain._rpc_url, contract_address=chain.contract_address, chain_id=chain.chain_id
    )
    started = time.monotonic()
    assert watcher_run(chain=misconfigured, duration=30, poll_seconds=0.05) == 0
    keeper = Keeper(chain=misconfigured, private_key=settings.GLISK.keeper_private_key)
    report = reveal_run(keeper=keeper, budget_seconds=30, poll_seconds=0.05)
    assert report is not None and report.notes == ["wrong chain"]
    assert time.monotonic() - started < 10  # not the 30 s budgets
    assert watcher_run(chain=chain, duration=0.5, poll_seconds=0.05) > 0  # the lock is free


def test_a_run_that_started_right_gives_the_lock_up_after_a_few_wrong_checks(
    chain, settings, proxy, other_chain
):
    from chain.services.guard import MAX_WRONG_IN_A_ROW

    proxied = GliskChain(rpc_url=proxy.url, contract_address=chain.contract_address, chain_id=chain.chain_id)
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        proxy.upstream = other_chain._rpc_url  # swapped after the first (right) step, for good

    steps = watcher_run(chain=proxied, duration=60, poll_seconds=0.01, sleep=sleep)
    assert steps >= 1
    assert len(naps) == MAX_WRONG_IN_A_ROW  # the first nap after the right step, then the backoffs
