"""Two writers of the same mint log (a webhook retry racing the watcher), and what ingestion reads
back: the unique index serializes them, the counts stay exact, and new tokens cost no read."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from chain.logs import MintLog
from chain.models import MintEvent
from chain.services.ingestion import IngestResult, mint_logs_ingest
from lifecycle.models import Token, TokenTransition

CHAIN_ID = 31337


def mint_log(n: int, *, start: int, quantity: int = 5, block: int | None = None) -> MintLog:
    return MintLog(
        minter="0x" + "11" * 20,
        prompt_author="0x" + "22" * 20,
        start_token_id=start,
        quantity=quantity,
        total_paid_wei=10**15 * quantity,
        tx_hash="0x" + f"{n:02x}" * 32,
        log_index=n,
        block_number=100 + n if block is None else block,
        block_hash="0x" + "cd" * 32,
    )


def in_threads(*targets: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run each target in its own thread and transaction, all started together; their results
    and their errors."""
    barrier, results, errors = threading.Barrier(len(targets)), [], []

    def run(target: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                results.append(target())
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


def racing(table: str, event: str, *targets: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """`in_threads(*targets)` while each row's `event` (INSERT, UPDATE) on `table` takes 0.3 s
    more (a trigger), so that the writers overlap where they lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_slow_write() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.3); "
            f"RETURN NEW; END $$ LANGUAGE plpgsql; CREATE TRIGGER test_slow_write BEFORE {event} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION test_slow_write()"
        )
    try:
        return in_threads(*targets)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER test_slow_write ON {table}; DROP FUNCTION test_slow_write()")


def authored(log: MintLog, author: str) -> MintLog:
    return dataclasses.replace(log, prompt_author=author)


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


@pytest.mark.django_db(transaction=True)
def test_two_writers_holding_the_same_logs_in_other_block_orders_do_not_deadlock():
    """A reorg can put the same two logs in two blocks in the other order; the writers still
    insert them in one order. A trigger slows each event's insert so that the writers overlap."""
    from authors.services import authors_ensure

    authors_ensure(wallets={"0x" + "22" * 20})
    one = [mint_log(1, start=1, block=100), mint_log(2, start=6, block=101)]
    two = [mint_log(2, start=6, block=100), mint_log(1, start=1, block=101)]
    results, errors = racing(
        "chain_mintevent",
        "INSERT",
        lambda: mint_logs_ingest(logs=one, chain_id=CHAIN_ID, source="webhook"),
        lambda: mint_logs_ingest(logs=two, chain_id=CHAIN_ID, source="watcher"),
    )
    assert not errors, errors  # before: "deadlock detected" for one of them
    assert sorted((r.mint_events_new, r.mint_events_duplicate) for r in results) == [(0, 2), (2, 0)]
    assert MintEvent.objects.count() == 2 and Token.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_many_writers_of_overlapping_logs_in_random_orders_count_every_log_and_token_once():
    logs = [mint_log(n, start=1 + 5 * (n - 1)) for n in range(1, 41)]
    rng = random.Random(14)
    subsets = [rng.sample(logs, 15) for _ in range(8)]
    results, errors = in_threads(
        *[
            (
                lambda sub=sub, n=n: mint_logs_ingest(
                    logs=sub, chain_id=CHAIN_ID, source=("webhook", "watcher")[n % 2]
                )
            )
            for n, sub in enumerate(subsets)
        ]
    )
    assert not errors, errors
    distinct = {(log.tx_hash, log.log_index) for sub in subsets for log in sub}
    assert sum(r.mint_events_new for r in results) == len(distinct) == MintEvent.objects.count()
    assert sum(r.mint_events_new + r.mint_events_duplicate for r in results) == 8 * 15
    assert sum(r.tokens_new for r in results) == Token.objects.count() == 5 * len(distinct)
    assert sum(r.tokens_disputed for r in results) == 0
    assert sum(r.authors_new for r in results) == 1  # the one wallet, made by one of them
    assert TokenTransition.objects.count() == Token.objects.count()


@pytest.mark.django_db
def test_a_duplicate_fills_block_fields_only_on_the_row_it_read():
    """The duplicate's stored copy is read without a lock; if the watcher replaced it with another
    block's copy after that read, the fill must not write the old block's hash and time onto it."""
    from chain.services.ingestion import _fill_block_fields

    stored = dataclasses.replace(mint_log(1, start=1, block=100), block_hash="")
    mint_logs_ingest(logs=[stored], chain_id=CHAIN_ID, source="webhook")
    read = MintEvent.objects.get()  # what a webhook's duplicate read, before the watcher's write
    remined = dataclasses.replace(
        stored,
        block_number=101,
        block_hash="0x" + "b1" * 32,
        block_timestamp=datetime(2026, 1, 2, tzinfo=UTC),
    )
    mint_logs_ingest(logs=[remined], chain_id=CHAIN_ID, source="watcher")
    late = dataclasses.replace(
        stored, block_hash="0x" + "a0" * 32, block_timestamp=datetime(2026, 1, 1, tzinfo=UTC)
    )
    _fill_block_fields(read, late, read.author_id, "webhook")
    event = MintEvent.objects.get()
    assert (event.block_number, event.block_hash, event.block_timestamp) == (
        101,
        remined.block_hash,
        remined.block_timestamp,
    )


@pytest.mark.django_db(transaction=True)
def test_writers_disputing_the_same_tokens_in_other_chain_orders_take_turns():
    """Two forks' logs (new events, so the unique index does not order the writers) contradict the
    same stored tokens in the other chain order: each writer locks them in token order."""
    from authors.services import authors_ensure

    other = "0x" + "33" * 20
    authors_ensure(wallets={"0x" + "22" * 20, other})
    mint_logs_ingest(logs=[mint_log(1, start=1), mint_log(2, start=6)], chain_id=CHAIN_ID, source="webhook")
    one = [authored(mint_log(3, start=1, block=200), other), authored(mint_log(4, start=6, block=201), other)]
    two = [authored(mint_log(5, start=6, block=200), other), authored(mint_log(6, start=1, block=201), other)]
    results, errors = racing(
        "lifecycle_token",
        "UPDATE",
        lambda: mint_logs_ingest(logs=one, chain_id=CHAIN_ID, source="webhook"),
        lambda: mint_logs_ingest(logs=two, chain_id=CHAIN_ID, source="watcher"),
    )
    assert not errors, errors  # before: "deadlock detected" for one of them
    assert sorted(sorted(r.new_token_ids) for r in results) == [[], []]
    assert sum(r.tokens_disputed for r in results) == 10  # each token once, by whichever came first
    assert Token.objects.filter(mint_disputed_at__isnull=False).count() == 10


@pytest.mark.django_db(transaction=True)
def test_a_fill_and_a_replacement_of_the_same_events_in_other_chain_orders_take_turns():
    """A webhook retry fills the block hashes of two stored events (old block order) while the
    watcher replaces both with a reorg's copies (the other order): both go in key order."""
    from authors.services import authors_ensure

    authors_ensure(wallets={"0x" + "22" * 20})
    old = [
        dataclasses.replace(mint_log(1, start=1, block=100), block_hash=""),
        dataclasses.replace(mint_log(2, start=6, block=101), block_hash=""),
    ]
    mint_logs_ingest(logs=old, chain_id=CHAIN_ID, source="webhook")
    retry = [dataclasses.replace(log, block_hash="0x" + "aa" * 32) for log in old]
    reorged = [
        dataclasses.replace(old[1], block_number=200, block_hash="0x" + "b2" * 32),
        dataclasses.replace(old[0], block_number=201, block_hash="0x" + "b1" * 32),
    ]
    _, errors = racing(
        "chain_mintevent",
        "UPDATE",
        lambda: mint_logs_ingest(logs=retry, chain_id=CHAIN_ID, source="webhook"),
        lambda: mint_logs_ingest(logs=reorged, chain_id=CHAIN_ID, source="watcher"),
    )
    assert not errors, errors  # before: "deadlock detected" for one of them
    # Whatever the order, the watcher's copies are what stays.
    assert sorted(MintEvent.objects.values_list("block_number", "block_hash")) == [
        (200, "0x" + "b2" * 32),
        (201, "0x" + "b1" * 32),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_logs_linking_the_same_recovered_tokens_at_once_leave_them_disputed():
    """Recovery stored tokens 1-3 without their mint event; two logs of the same author from two
    transactions (two forks) arrive at once. Both read "no mint event yet" and plan a link; the
    second decides again under the lock, finds the first's link, and disputes them, as it does
    when the two come one after the other."""
    from django.utils import timezone

    from authors.services import authors_ensure

    authors, _ = authors_ensure(wallets={"0x" + "22" * 20})
    for token_id in (1, 2, 3):
        Token.objects.create(
            token_id=token_id, author=authors["0x" + "22" * 20], status_changed_at=timezone.now()
        )
    one, two = [mint_log(1, start=1, quantity=3)], [mint_log(2, start=1, quantity=3)]
    results, errors = racing(
        "lifecycle_token",
        "UPDATE",
        lambda: mint_logs_ingest(logs=one, chain_id=CHAIN_ID, source="webhook"),
        lambda: mint_logs_ingest(logs=two, chain_id=CHAIN_ID, source="watcher"),
    )
    assert not errors, errors
    assert sorted(r.tokens_disputed for r in results) == [0, 3]  # before: [0, 0], the second's link a no-op
    assert Token.objects.filter(mint_disputed_at__isnull=False).count() == 3
    assert Token.objects.filter(mint_event=None).count() == 0
