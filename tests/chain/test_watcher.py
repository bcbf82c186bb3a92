from __future__ import annotations

import pytest

from chain.adapter import GliskChain
from chain.models import MintEvent
from chain.services.watcher import cursor_key, watcher_run, watcher_step
from glisk.core.state import advisory_lock, state_get
from glisk.devtools import devnet
from lifecycle.models import Token

pytestmark = pytest.mark.django_db


def mine(chain, blocks):
    chain.rpc("anvil_mine", [hex(blocks)])


def drain(chain):
    while (step := watcher_step(chain=chain)) is not None and not step.caught_up:
        pass


def test_watcher_ingests_a_mint_no_webhook_announced(chain, accounts, settings):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=4)
    assert watcher_step(chain=chain) is None or not Token.objects.exists()  # not confirmed yet
    mine(chain, settings.GLISK.watcher_confirmations)
    drain(chain)
    event = MintEvent.objects.get()
    assert event.source == "watcher" and event.tx_hash == receipt["transactionHash"]
    assert sorted(Token.objects.values_list("token_id", flat=True)) == [1, 2, 3, 4]
    assert (
        state_get(key=cursor_key(chain))["block"]
        == chain.block_number() - settings.GLISK.watcher_confirmations
    )


def test_watcher_resumes_from_its_cursor_without_gaps_or_repeats(chain, accounts, settings):
    settings.GLISK = settings.GLISK.__class__(**{**settings.GLISK.__dict__, "watcher_max_block_range": 3})
    confirmations = settings.GLISK.watcher_confirmations
    for quantity in (1, 2, 3):
        devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=quantity)
        mine(chain, 2)
    mine(chain, confirmations)
    first = watcher_step(chain=chain)  # a "process" that stops after one bounded range
    assert first is not None and first.to_block - first.from_block == 2
    # A new process: the cursor in the database is all it knows.
    drain(chain)
    for quantity in (5, 6):
        devnet.mint(chain, minter=accounts[4], prompt_author=accounts[5], quantity=quantity)
    mine(chain, confirmations)
    drain(chain)
    assert watcher_step(chain=chain) is None
    assert MintEvent.objects.count() == 5
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, 18))


def test_a_reorg_before_confirmations_is_never_ingested(chain, accounts, settings):
    assert settings.GLISK.watcher_confirmations >= 1
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    drain(chain)
    assert not Token.objects.exists()
    chain.rpc("anvil_reorg", [1, []])  # the block holding the mint is replaced by an empty one
    assert chain.next_token_id() == 1
    mine(chain, settings.GLISK.watcher_confirmations + 2)
    drain(chain)
    assert not MintEvent.objects.exists() and not Token.objects.exists()
    assert state_get(key=cursor_key(chain))["block"] >= 1


def test_watcher_backs_off_while_the_rpc_is_down(chain, settings):
    dead = GliskChain(
        rpc_url=f"http://127.0.0.1:{devnet.free_port()}",
        contract_address=chain.contract_address,
        chain_id=chain.chain_id,
        timeout=0.5,
    )
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watcher_run(chain=dead, duration=60, poll_seconds=0.5, sleep=sleep)
    assert naps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_only_one_watcher_runs_at_a_time(chain):
    from django.db import connections

    key = f"watcher:{chain.chain_id}:{chain.contract_address.lower()}"
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
            assert cursor.fetchone()[0]
        assert watcher_run(chain=chain, duration=1) == 0
        with advisory_lock(key) as got:
            assert not got
    finally:
        other.close()
