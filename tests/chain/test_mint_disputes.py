"""A mint log that contradicts a stored token is settled by the chain, never by whoever came first.

Against anvil: a webhook ingests a mint at the head, a reorg replaces it with another author's
mint of the same ids, and the watcher (with its confirmations) corrects the tokens."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.utils import timezone

from authors.models import Author
from chain.models import MintEvent, RevealTransaction
from chain.services.disputes import mint_disputes_settle
from chain.services.ingestion import mint_logs_ingest
from chain.services.keeper import Keeper, reveal_run
from chain.services.recovery import tokens_recover
from chain.services.watcher import watcher_run, watcher_step
from glisk.devtools import devnet
from lifecycle.models import Token, TokenTransition
from lifecycle.selectors import reveal_queue

pytestmark = pytest.mark.django_db


def webhook_ingest(chain, receipt):
    block = int(receipt["blockNumber"], 16)
    logs = chain.mint_logs(block, block)
    assert logs
    return mint_logs_ingest(logs=logs, chain_id=chain.chain_id, source=MintEvent.Source.WEBHOOK)


def confirm(chain, settings):
    chain.rpc("anvil_mine", [hex(settings.GLISK.watcher_confirmations + 1)])


def drain(chain):
    while (step := watcher_step(chain=chain)) is not None and not step.caught_up:
        pass


def reasons(token_id):
    rows = TokenTransition.objects.filter(token_id=token_id).order_by("pk")
    return list(rows.values_list("reason", flat=True))


def test_a_reorged_mint_is_corrected_from_the_chain_and_the_tokens_restart(chain, accounts, settings):
    first = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=3)
    assert webhook_ingest(chain, first).tokens_new == 3
    # The pipeline got on with them: one ready, one in a worker's hands, one untouched.
    Token.objects.filter(pk=1).update(
        status="ready", image_cid="bafyimage", metadata_cid="bafymeta", prompt_text="the first author's"
    )
    Token.objects.filter(pk=2).update(
        status="generating", claimed_by="worker-a", lease_expires_at=timezone.now() + timedelta(seconds=30)
    )

    chain.rpc("anvil_reorg", [1, []])  # the mint is gone; the same ids go to another author
    assert chain.next_token_id() == 1
    second = devnet.mint(chain, minter=accounts[5], prompt_author=accounts[4], quantity=3)

    result = webhook_ingest(chain, second)  # at the head, before any confirmation
    assert (result.tokens_new, result.tokens_disputed) == (0, 3)
    assert reveal_queue(limit=10) == []  # a disputed token is never sent
    assert all(t.author.wallet_address == accounts[3] for t in Token.objects.all())
    assert mint_disputes_settle(chain=chain).unconfirmed == 3  # not confirmed yet: nothing moves
    assert Token.objects.filter(mint_disputed_at__isnull=False).count() == 3

    confirm(chain, settings)
    watcher_run(chain=chain, duration=1.0, poll_seconds=0.05)

    held = MintEvent.objects.get(tx_hash=second["transactionHash"])
    for token in Token.objects.select_related("author").order_by("pk"):
        assert token.author.wallet_address == accounts[4]
        assert token.mint_event_id == held.pk and token.mint_disputed_at is None
        assert token.status == "detected" and token.claimed_by == "" and not token.metadata_cid
        assert not token.image_cid and not token.prompt_text and token.last_error == ""
        assert any(r.startswith("contradicted by the mint log in " + held.tx_hash) for r in reasons(token.pk))
        assert any(
            r.startswith(f"mint corrected from the chain: author {accounts[4]}") for r in reasons(token.pk)
        )
    restart = TokenTransition.objects.get(token_id=1, to_status="detected", from_status="ready")
    assert restart.actor == "watcher" and restart.detail["chain_mint_tx"] == held.tx_hash
    # The worker that held token 2 lost it: its finishing write would match nothing.
    assert TokenTransition.objects.filter(token_id=2, from_status="generating", to_status="detected").exists()

    # The stale delivery replayed: disputed again, and the chain says what it said before.
    assert webhook_ingest_replay(chain, first) == 3
    outcome = mint_disputes_settle(chain=chain)
    assert outcome.outcomes == {"agrees": 3}
    assert set(Token.objects.values_list("author__wallet_address", flat=True)) == {accounts[4]}
    assert "re-read the chain: it agrees with the stored mint" in reasons(3)


def webhook_ingest_replay(chain, receipt):
    """The old delivery's log, as stored (the chain no longer has it to read)."""
    from chain.logs import MintLog

    event = MintEvent.objects.get(tx_hash=receipt["transactionHash"])
    log = MintLog(
        minter=event.minter,
        prompt_author=event.prompt_author,
        start_token_id=event.start_token_id,
        quantity=event.quantity,
        total_paid_wei=int(event.total_paid_wei),
        tx_hash=event.tx_hash,
        log_index=event.log_index,
        block_number=event.block_number,
        block_hash=event.block_hash,
    )
    return mint_logs_ingest(logs=[log], chain_id=chain.chain_id, source="webhook").tokens_disputed


def test_the_keeper_disputes_an_author_mismatch_and_the_watcher_restarts_the_token(chain, accounts, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_wait_seconds=0.0)
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    webhook_ingest(chain, receipt)
    impostor = Author.objects.create(wallet_address=accounts[6])
    Token.objects.update(status="ready", metadata_cid="bafkreiaaaa", image_cid="bafkreibbbb")
    Token.objects.filter(pk=1).update(author=impostor)  # a bug or a reorg the webhook saw first

    report = reveal_run(
        keeper=Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key),
        budget_seconds=5,
        poll_seconds=0.01,
    )
    assert report is not None and report.disputed_tokens == 1 and report.failed_tokens == 0
    assert RevealTransaction.objects.get().token_ids == [2]
    token = Token.objects.get(pk=1)
    assert token.status == "ready" and token.mint_disputed_at is not None
    assert token.last_error.startswith(f"author mismatch: chain says {accounts[3]}")

    confirm(chain, settings)
    settled = mint_disputes_settle(chain=chain)
    assert settled.outcomes == {"restarted": 1}
    token = Token.objects.select_related("author").get(pk=1)
    assert token.status == "detected" and token.author.wallet_address == accounts[3]
    assert token.mint_event.tx_hash == receipt["transactionHash"] and token.last_error == ""


def test_a_recovered_token_gets_its_mint_event_from_the_watcher_without_a_dispute(chain, accounts, settings):
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    tokens_recover(chain=chain)
    assert list(Token.objects.values_list("mint_event", flat=True)) == [None, None]
    confirm(chain, settings)
    drain(chain)
    event = MintEvent.objects.get()
    assert list(Token.objects.values_list("mint_event", flat=True)) == [event.pk, event.pk]
    assert not Token.objects.filter(mint_disputed_at__isnull=False).exists()


def test_a_disputed_token_the_chain_does_not_have_is_left_to_the_keeper(chain, accounts, settings):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    webhook_ingest(chain, receipt)
    chain.rpc("anvil_reorg", [1, []])
    Token.objects.update(mint_disputed_at=timezone.now(), last_error="contradicted by a test")
    confirm(chain, settings)
    assert mint_disputes_settle(chain=chain).outcomes == {"absent": 1}
    token = Token.objects.get()
    assert token.mint_disputed_at is None and token.last_error == ""
    assert "re-read the chain: it has no such token" in reasons(token.pk)
