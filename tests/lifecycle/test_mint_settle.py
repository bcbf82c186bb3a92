"""token_mint_settle on its own: what a disputed token becomes once the chain has spoken."""

from __future__ import annotations

import pytest
from django.utils import timezone

from lifecycle.models import Token, TokenTransition
from lifecycle.services.minting import ChainMint, token_mint_dispute, token_mint_settle
from tests.factories import AuthorFactory, MintEventFactory, RevealTransactionFactory, TokenFactory

pytestmark = pytest.mark.django_db


def chain_says(author, event=None):
    return ChainMint(
        author_id=author.pk,
        author_wallet=author.wallet_address,
        mint_event_id=event.pk if event else None,
        mint_tx_hash=event.tx_hash if event else "",
    )


def test_a_token_not_disputed_is_left_alone():
    token = TokenFactory.create()
    other = AuthorFactory.create()
    assert token_mint_settle(token_id=token.pk, chain_mint=chain_says(other), actor="t") == "not disputed"
    token.refresh_from_db()
    assert token.author_id != other.pk


def test_a_revealed_token_takes_the_chains_author_and_its_timeline_says_what_was_revealed():
    token = TokenFactory.create(status="revealed", metadata_cid="bafymeta", revealed_at=timezone.now())
    assert token_mint_dispute(token_id=token.pk, actor="webhook", reason="contradicted by a test")
    assert not token_mint_dispute(token_id=token.pk, actor="webhook", reason="again")  # idempotent
    chain_author = AuthorFactory.create()
    event = MintEventFactory.create(author=chain_author)
    outcome = token_mint_settle(token_id=token.pk, chain_mint=chain_says(chain_author, event), actor="t")
    assert outcome == "corrected"
    token.refresh_from_db()
    assert token.status == "revealed" and token.metadata_cid == "bafymeta"
    assert token.author_id == chain_author.pk and token.mint_event_id == event.pk
    note = TokenTransition.objects.filter(token=token).latest("pk")
    assert "already revealed with the earlier author's prompt" in note.reason


def test_same_author_other_transaction_corrects_the_mint_without_restarting():
    token = TokenFactory.create(status="ready", metadata_cid="bafymeta")
    token_mint_dispute(token_id=token.pk, actor="webhook", reason="contradicted by a test")
    event = MintEventFactory.create(author=token.author)
    outcome = token_mint_settle(token_id=token.pk, chain_mint=chain_says(token.author, event), actor="t")
    assert outcome == "corrected"
    token.refresh_from_db()
    assert token.status == "ready" and token.metadata_cid == "bafymeta" and token.mint_event_id == event.pk
    assert token.mint_disputed_at is None and token.last_error == ""


def test_a_token_in_a_reveal_transaction_in_flight_waits_for_it():
    tx = RevealTransactionFactory.create()
    token = TokenFactory.create(status="ready", metadata_cid="bafymeta", reveal_transaction=tx)
    token_mint_dispute(token_id=token.pk, actor="keeper", reason="author mismatch: test")
    other = AuthorFactory.create()
    assert token_mint_settle(token_id=token.pk, chain_mint=chain_says(other), actor="t") == "waiting"
    token.refresh_from_db()
    assert token.mint_disputed_at is not None and token.author_id != other.pk


def test_a_failed_token_with_another_author_restarts():
    token = TokenFactory.create(status="failed", failed_stage="generating", last_error="content policy")
    token_mint_dispute(token_id=token.pk, actor="webhook", reason="contradicted by a test")
    other = AuthorFactory.create()
    assert token_mint_settle(token_id=token.pk, chain_mint=chain_says(other), actor="t") == "restarted"
    token.refresh_from_db()
    assert token.status == "detected" and token.author_id == other.pk and token.failed_stage == ""


def test_a_worker_holding_a_detected_token_when_it_is_restarted_does_not_use_the_old_prompt():
    """The image stage claimed the token (and loaded its author); before its turn in the batch the
    watcher settles a dispute for another author. The worker's lease is gone, so its generation
    is lost, and the next claim uses the chain's author's prompt."""
    from lifecycle.providers.images import LocalImageProvider
    from lifecycle.services.stages import StageReport, image
    from lifecycle.services.tokens import token_claim

    old = AuthorFactory.create(prompt_text="the old author's prompt")
    new = AuthorFactory.create(prompt_text="the new author's prompt")
    token = TokenFactory.create(author=old)
    claim = token_claim(statuses=["detected", "generating"], worker_id="w1", limit=10, lease_seconds=60)
    (held,) = Token.objects.select_related("author").in_bulk(claim.ids).values()
    assert token_mint_dispute(token_id=token.pk, actor="webhook", reason="contradicted by a test")
    outcome = token_mint_settle(
        token_id=token.pk,
        chain_mint=ChainMint(author_id=new.pk, author_wallet=new.wallet_address, mint_event_id=None),
        actor="watcher",
    )
    assert outcome == "restarted"

    report = StageReport()
    image.image_generate_token(token=held, worker_id="w1", provider=LocalImageProvider(), report=report)
    assert report.lost == 1 and report.succeeded == 0
    after = Token.objects.get(pk=token.pk)
    assert (after.status, after.author_id, after.claimed_by, after.prompt_text) == (
        "detected",
        new.pk,
        "",
        "",
    )
    claim = token_claim(statuses=["detected", "generating"], worker_id="w2", limit=10, lease_seconds=60)
    (fresh,) = Token.objects.select_related("author").in_bulk(claim.ids).values()
    image.image_generate_token(
        token=fresh, worker_id="w2", provider=LocalImageProvider(), report=StageReport()
    )
    assert Token.objects.get(pk=token.pk).prompt_text == "the new author's prompt"


@pytest.mark.django_db
def test_two_logs_of_one_call_naming_the_same_token_make_it_once_and_dispute_it():
    """Found in review: overlapping ranges in one delivery gave the shared token two `detected`
    history rows, counted it twice, and disputed nothing although the authors differed."""
    from lifecycle.services.minting import MintedBatch, tokens_register_minted

    first, second = (
        MintEventFactory.create(start_token_id=100, quantity=3),
        MintEventFactory.create(start_token_id=102, quantity=2),
    )
    batches = [
        MintedBatch(mint_event_id=e.pk, author_id=e.author_id, token_ids=range(s, s + n), tx_hash=e.tx_hash)
        for e, s, n in ((first, 100, 3), (second, 102, 2))
    ]
    registered = tokens_register_minted(batches=batches, actor="webhook")
    assert registered.new_token_ids == [100, 101, 102, 103] and registered.disputed == [102]
    shared = Token.objects.get(pk=102)
    assert (shared.author_id, shared.mint_event_id) == (first.author_id, first.pk)  # the first claim
    assert shared.mint_disputed_at is not None
    assert TokenTransition.objects.filter(token_id=102, from_status="").count() == 1  # created once


@pytest.mark.django_db
def test_a_recovered_token_two_logs_name_is_linked_to_the_first_and_disputed_by_the_other():
    """Found in review: both logs were compared with the row as read (no mint event yet), so
    both agreed, the first linked it, and the second's contradiction left no trace."""
    from lifecycle.services.minting import (
        FoundOnChain,
        MintedBatch,
        tokens_register_minted,
        tokens_register_recovered,
    )

    author = AuthorFactory.create()
    tokens_register_recovered(found=[FoundOnChain(2, author.pk, False, "", "")])
    first, second = (MintEventFactory.create(author=author) for _ in range(2))
    batches = [
        MintedBatch(mint_event_id=e.pk, author_id=author.pk, token_ids=ids, tx_hash=e.tx_hash)
        for e, ids in ((first, range(1, 3)), (second, range(2, 4)))
    ]
    registered = tokens_register_minted(batches=batches, actor="webhook")
    assert registered.disputed == [2] and registered.new_token_ids == [1, 3] and registered.existing == 1
    token = Token.objects.get(pk=2)
    assert token.mint_event_id == first.pk and token.mint_disputed_at is not None


@pytest.mark.parametrize("same_author", [True, False])
@pytest.mark.django_db(transaction=True)
def test_a_token_recovery_commits_while_ingestion_inserts_it_is_still_compared(same_author):
    """Found in review: ingestion read the stored tokens before recovery committed, its insert
    then skipped the token, and nothing compared it: another author went undisputed, the same
    author's token stayed without its mint event."""
    import threading
    import time

    from django.db import connections, transaction

    from lifecycle.services.minting import (
        FoundOnChain,
        MintedBatch,
        tokens_register_minted,
        tokens_register_recovered,
    )

    author = AuthorFactory.create()
    recovered_for = author if same_author else AuthorFactory.create()
    event = MintEventFactory.create(author=author)
    recovering, results = threading.Event(), {}

    def recover() -> None:
        try:
            with transaction.atomic():
                tokens_register_recovered(found=[FoundOnChain(300, recovered_for.pk, False, "", "")])
                recovering.set()
                time.sleep(0.5)  # ingestion reads and inserts meanwhile, and waits for this commit
        finally:
            recovering.set()
            connections.close_all()

    def ingest() -> None:
        try:
            recovering.wait(5)
            results["ingest"] = tokens_register_minted(
                batches=[
                    MintedBatch(
                        mint_event_id=event.pk, author_id=author.pk, token_ids=range(299, 301), tx_hash="0x1"
                    )
                ],
                actor="webhook",
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=recover), threading.Thread(target=ingest)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    registered = results["ingest"]
    assert registered.new_token_ids == [299] and registered.existing == 1
    token = Token.objects.get(pk=300)
    assert TokenTransition.objects.filter(token_id=300, from_status="").count() == 1
    if same_author:
        assert (
            registered.disputed == [] and token.mint_event_id == event.pk and token.mint_disputed_at is None
        )
    else:
        assert registered.disputed == [300] and token.mint_disputed_at is not None
