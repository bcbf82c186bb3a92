"""Two writers of the same mint log (a webhook retry racing the watcher), and what ingestion reads
back: the unique index serializes them, the counts stay exact, and new tokens cost no read."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from chain.adapter import MintLog
from chain.models import MintEvent
from chain.services.ingestion import IngestResult, mint_logs_ingest
from lifecycle.models import Token, TokenTransition

CHAIN_ID = 31337


def mint_log(n: int, *, start: int, quantity: int = 5) -> MintLog:
    return MintLog(
        minter="0x" + "11" * 20,
        prompt_author="0x" + "22" * 20,
        start_token_id=start,
        quantity=quantity,
        total_paid_wei=10**15 * quantity,
        tx_hash="0x" + f"{n:02x}" * 32,
        log_index=n,
        block_number=100 + n,
        block_hash="0x" + "cd" * 32,
    )


class Rollback(Exception):
    pass


@pytest.mark.parametrize("first_commits", [True, False])
@pytest.mark.django_db(transaction=True)
def test_a_second_writer_of_a_log_waits_for_the_first_and_counts_what_it_left(first_commits):
    shared, other = mint_log(1, start=1), mint_log(2, start=6)
    inserted, results = threading.Event(), {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = mint_logs_ingest(logs=[shared], chain_id=CHAIN_ID, source="webhook")
                inserted.set()
                time.sleep(0.5)  # the second writer meets this uncommitted event meanwhile
                if not first_commits:
                    raise Rollback
        except Rollback:
            pass
        finally:
            inserted.set()
            connections.close_all()

    def second() -> None:
        try:
            inserted.wait(5)
            results["second"] = mint_logs_ingest(logs=[shared, other], chain_id=CHAIN_ID, source="watcher")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    second_result: IngestResult = results["second"]
    assert results["first"].mint_events_new == 1
    if first_commits:
        assert (second_result.mint_events_new, second_result.mint_events_duplicate) == (1, 1)
        assert (second_result.tokens_new, second_result.tokens_existing) == (5, 5)
        assert MintEvent.objects.get(tx_hash=shared.tx_hash).source == "webhook"
    else:
        assert (second_result.mint_events_new, second_result.mint_events_duplicate) == (2, 0)
        assert (second_result.tokens_new, second_result.tokens_existing) == (10, 0)
        assert MintEvent.objects.get(tx_hash=shared.tx_hash).source == "watcher"
    assert MintEvent.objects.count() == 2
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, 11))
    assert TokenTransition.objects.filter(from_status="").count() == 10  # one first row each
    assert second_result.tokens_disputed == 0


@pytest.mark.django_db
def test_new_tokens_are_inserted_without_reading_tokens_and_stored_ones_are_read_once():
    log = mint_log(1, start=1)
    with CaptureQueriesContext(connection) as new:
        result = mint_logs_ingest(logs=[log], chain_id=CHAIN_ID, source="webhook")
    assert (result.mint_events_new, result.tokens_new) == (1, 5)
    reads = [q["sql"] for q in new.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if "lifecycle_token" in sql or "chain_mintevent" in sql]
    assert not [q for q in new.captured_queries if "advisory" in q["sql"]]

    # The same log again, and twice more in one call: each copy is a duplicate, read in one
    # statement, and its tokens are compared in one more.
    with CaptureQueriesContext(connection) as again:
        result = mint_logs_ingest(logs=[log, log, log], chain_id=CHAIN_ID, source="watcher")
    assert (result.mint_events_new, result.mint_events_duplicate) == (0, 3)
    assert (result.tokens_new, result.tokens_existing, result.tokens_disputed) == (0, 5, 0)
    reads = [q["sql"] for q in again.captured_queries if q["sql"].startswith("SELECT")]
    assert len([sql for sql in reads if 'FROM "chain_mintevent"' in sql]) == 1
    assert len([sql for sql in reads if 'FROM "lifecycle_token"' in sql]) == 1

    # A log named twice in one call when new: the first copy is the new event.
    fresh = mint_log(2, start=6)
    result = mint_logs_ingest(logs=[fresh, fresh], chain_id=CHAIN_ID, source="webhook")
    assert (result.mint_events_new, result.mint_events_duplicate) == (1, 1)
    assert (result.tokens_new, result.tokens_existing, result.tokens_disputed) == (5, 0, 0)
    assert TokenTransition.objects.filter(token_id__in=range(6, 11), from_status="").count() == 5
