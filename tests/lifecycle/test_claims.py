from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from lifecycle.models import Token, TokenStatus
from lifecycle.services.tokens import (
    LeaseLost,
    token_claim,
    token_lease_held,
    token_lease_release,
    token_transition,
)
from tests.factories import TokenFactory

S = TokenStatus


@pytest.mark.django_db
def test_claim_takes_only_due_unleased_tokens_of_the_status():
    now = timezone.now()
    due = TokenFactory.create_batch(3, status=S.DETECTED)
    TokenFactory.create(status=S.DETECTED, next_attempt_at=now + timedelta(minutes=5))  # backing off
    TokenFactory.create(status=S.UPLOADING)  # another stage
    TokenFactory.create(status=S.DETECTED, claimed_by="other", lease_expires_at=now + timedelta(minutes=1))
    claim = token_claim(statuses=[S.DETECTED], worker_id="w1", limit=10, lease_seconds=60)
    assert sorted(claim.ids) == sorted(t.pk for t in due)
    assert set(Token.objects.filter(claimed_by="w1").values_list("pk", flat=True)) == set(claim.ids)


@pytest.mark.django_db
def test_claim_respects_limit_and_orders_by_due_time():
    now = timezone.now()
    older = TokenFactory.create(status=S.DETECTED, next_attempt_at=now - timedelta(minutes=2))
    TokenFactory.create_batch(4, status=S.DETECTED, next_attempt_at=now - timedelta(minutes=1))
    claim = token_claim(statuses=[S.DETECTED], worker_id="w1", limit=2, lease_seconds=60)
    assert len(claim.tokens) == 2
    assert claim.tokens[0].pk == older.pk


@pytest.mark.django_db
def test_expired_lease_is_reclaimable_and_the_old_owner_loses_it():
    token = TokenFactory.create(status=S.GENERATING)
    first = token_claim(statuses=[S.GENERATING], worker_id="dead-worker", limit=5, lease_seconds=60)
    assert first.ids == [token.pk]
    assert token_claim(statuses=[S.GENERATING], worker_id="w2", limit=5, lease_seconds=60).ids == []

    later = timezone.now() + timedelta(seconds=61)
    second = token_claim(statuses=[S.GENERATING], worker_id="w2", limit=5, lease_seconds=60, now=later)
    assert second.ids == [token.pk]
    # The dead worker comes back: its finish must not apply.
    with pytest.raises(LeaseLost):
        token_transition(token_id=token.pk, to=S.UPLOADING, actor="stage:image", lease_owner="dead-worker")
    assert not token_lease_release(token_id=token.pk, worker_id="dead-worker", fields={"image_attempts": 9})
    token.refresh_from_db()
    assert token.status == S.GENERATING
    assert token.claimed_by == "w2"
    assert token.image_attempts == 0
    token_transition(token_id=token.pk, to=S.UPLOADING, actor="stage:image", lease_owner="w2")
    token.refresh_from_db()
    assert token.status == S.UPLOADING
    assert token.claimed_by == ""
    assert token.lease_expires_at is None


@pytest.mark.django_db
def test_release_keeps_status_and_records_backoff():
    token = TokenFactory.create(status=S.UPLOADING)
    token_claim(statuses=[S.UPLOADING], worker_id="w1", limit=1, lease_seconds=60)
    assert token_lease_held(token_id=token.pk, worker_id="w1")
    retry_at = timezone.now() + timedelta(seconds=30)
    assert token_lease_release(
        token_id=token.pk, worker_id="w1", fields={"ipfs_attempts": 1, "next_attempt_at": retry_at}
    )
    token.refresh_from_db()
    assert token.status == S.UPLOADING
    assert token.ipfs_attempts == 1
    assert token.next_attempt_at == retry_at
    assert not token_lease_held(token_id=token.pk, worker_id="w1")


@pytest.mark.django_db(transaction=True)
def test_two_connections_claiming_at_once_get_disjoint_sets():
    """Each thread has its own database connection; both claim while the other's lock is held."""
    TokenFactory.create_batch(40, status=S.DETECTED)
    barrier = threading.Barrier(2)
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            got: list[int] = []
            for _ in range(10):
                got += token_claim(statuses=[S.DETECTED], worker_id=name, limit=3, lease_seconds=60).ids
            results[name] = got
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    a, b = set(results["a"]), set(results["b"])
    assert len(results["a"]) == len(a)
    assert len(results["b"]) == len(b)
    assert a.isdisjoint(b)
    assert a | b == set(Token.objects.values_list("pk", flat=True))
    assert Token.objects.filter(claimed_by="a").count() == len(a)


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_another_transaction_is_skipped_not_waited_for():
    locked, free = TokenFactory.create(status=S.DETECTED), TokenFactory.create(status=S.DETECTED)
    holding = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        from django.db import transaction

        with transaction.atomic():
            list(Token.objects.select_for_update().filter(pk=locked.pk))
            holding.set()
            release.wait(timeout=10)
        connections.close_all()

    t = threading.Thread(target=hold_lock)
    t.start()
    assert holding.wait(timeout=10)
    try:
        claim = token_claim(statuses=[S.DETECTED], worker_id="w", limit=10, lease_seconds=60)
        assert claim.ids == [free.pk]
    finally:
        release.set()
        t.join(timeout=10)
    assert connection.is_usable()


@pytest.mark.django_db
def test_a_starting_cluster_frees_the_leases_of_this_machines_dead_workers():
    import subprocess

    from lifecycle.services.tokens import token_leases_release_dead
    from lifecycle.tasks import machine_name, process_alive, release_dead_worker_leases

    gone = subprocess.Popen(["sleep", "60"])
    gone.kill()
    gone.wait()
    assert not process_alive(gone.pid)
    import os
    import socket

    from lifecycle.tasks import worker_id

    host = machine_name()
    assert worker_id().startswith(f"{host}:{os.getpid()}:")
    expires = timezone.now() + timedelta(seconds=30)
    dead = TokenFactory.create(claimed_by=f"{host}:{gone.pid}:aaaa", lease_expires_at=expires)
    alive = TokenFactory.create(claimed_by=f"{host}:{os.getpid()}:bbbb", lease_expires_at=expires)
    elsewhere = TokenFactory.create(claimed_by=f"other-host:{gone.pid}:cccc", lease_expires_at=expires)
    # Same host name, another boot or PID namespace (a container sharing the host's name): its pids
    # are not ours to look up.
    twin = TokenFactory.create(
        claimed_by=f"{socket.gethostname()}~0badc0de:{gone.pid}:dddd", lease_expires_at=expires
    )
    assert release_dead_worker_leases() == {f"{host}:{gone.pid}:aaaa": 1}
    assert token_claim(statuses=["detected"], worker_id="next", limit=10, lease_seconds=30).ids == [dead.pk]
    for token in (alive, elsewhere, twin):  # a live worker here, and any worker elsewhere, keep theirs
        token.refresh_from_db()
        assert token.claimed_by and token.lease_expires_at == expires
    assert token_leases_release_dead(host="h", alive=lambda pid: False) == {}


@pytest.mark.django_db
def test_a_live_worker_in_another_pid_namespace_with_our_host_name_keeps_its_lease():
    """A second container with the same host name (host networking): its pids mean nothing here,
    so its worker, alive, must not lose its lease to our start-up sweep."""
    import shutil
    import subprocess
    import sys

    from glisk.core.machine import machine_name
    from lifecycle.tasks import release_dead_worker_leases

    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to run a process in another PID namespace")
    code = "import os; from glisk.core.machine import machine_name; print(machine_name(), os.getpid())"
    done = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    theirs, _ = done.stdout.split()
    assert theirs.split("~")[0] == machine_name().split("~")[0] and theirs != machine_name()
    unused_here = subprocess.Popen(["sleep", "60"])
    unused_here.kill()
    unused_here.wait()
    # Its worker runs under a pid that no process of ours has: not dead, just not ours to see.
    holder = f"{theirs}:{unused_here.pid}:eeee"
    token = TokenFactory.create(claimed_by=holder, lease_expires_at=timezone.now() + timedelta(seconds=30))
    assert release_dead_worker_leases() == {}
    token.refresh_from_db()
    assert token.claimed_by == holder


@pytest.mark.django_db
def test_a_batch_moves_in_one_compare_and_swap_with_each_tokens_own_fields():
    from django.test.utils import CaptureQueriesContext

    from lifecycle.models import TokenTransition
    from lifecycle.services.tokens import tokens_move

    tokens = TokenFactory.create_batch(4, status=S.GENERATING)
    ids = [t.pk for t in tokens]
    token_claim(statuses=[S.GENERATING], worker_id="w1", limit=10, lease_seconds=60)
    # One was taken over (its lease expired, another worker holds it), one moved away meanwhile.
    Token.objects.filter(pk=ids[1]).update(claimed_by="w2")
    Token.objects.filter(pk=ids[2]).update(status=S.FAILED)
    with CaptureQueriesContext(connection) as queries:
        moved = tokens_move(
            fields={pk: {"image": f"images/{pk}.png", "image_attempts": n} for n, pk in enumerate(ids, 1)},
            to=S.UPLOADING,
            source=S.GENERATING,
            lease_owner="w1",
            actor="stage:image",
            reason="image stored",
            detail={"worker": "w1"},
        )
    assert moved == {ids[0], ids[3]}
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(statements) == 2  # the UPDATE for the batch and the history INSERT
    rows = {t.pk: t for t in Token.objects.filter(pk__in=ids)}
    assert (rows[ids[0]].status, rows[ids[0]].image.name, rows[ids[0]].image_attempts) == (
        S.UPLOADING,
        f"images/{ids[0]}.png",
        1,
    )
    assert rows[ids[3]].image_attempts == 4 and rows[ids[3]].claimed_by == ""  # lease released
    assert rows[ids[1]].status == S.GENERATING and rows[ids[1]].claimed_by == "w2"  # untouched
    assert rows[ids[2]].status == S.FAILED
    history = TokenTransition.objects.filter(token_id__in=ids, to_status=S.UPLOADING)
    assert sorted(history.values_list("token_id", flat=True)) == sorted(moved)
    assert all(h.detail == {"worker": "w1"} and h.from_status == S.GENERATING for h in history)


@pytest.mark.django_db
def test_a_batch_move_that_matches_nothing_writes_no_history():
    from lifecycle.models import TokenTransition
    from lifecycle.services.tokens import tokens_move

    token = TokenFactory.create(status=S.GENERATING)
    assert (
        tokens_move(
            fields={token.pk: {}},
            to=S.UPLOADING,
            source=S.GENERATING,
            lease_owner="nobody",
            actor="a",
            reason="r",
        )
        == set()
    )
    assert not TokenTransition.objects.filter(token=token).exists()
    with pytest.raises(ValueError, match="not in ALLOWED_TRANSITIONS"):
        tokens_move(
            fields={token.pk: {}}, to=S.DETECTED, source=S.REVEALED, lease_owner="w", actor="a", reason="r"
        )


@pytest.mark.django_db
def test_update_from_values_writes_nulls_json_and_checks_its_precondition_per_row():
    from glisk.core.bulk import update_from_values

    a, b = TokenFactory.create_batch(2, status=S.UPLOADING, claimed_by="w1")
    changed = update_from_values(
        Token,
        {
            a.pk: {
                "metadata": {"name": "GLISK S0 #1", "attributes": [{"trait_type": "x", "value": "'; --"}]}
            },
            b.pk: {"metadata": None},
        },
        where={"claimed_by": "w1"},
    )
    assert changed == {a.pk, b.pk}
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.metadata["attributes"][0]["value"] == "'; --" and b.metadata is None
    assert update_from_values(Token, {a.pk: {"last_error": "x"}}, where={"claimed_by": "w2"}) == set()
    a.refresh_from_db()
    assert a.last_error == ""
    # Now() is the database's clock in the statement, for every row of the batch or none.
    from django.db.models.functions import Now

    before = a.status_changed_at
    assert update_from_values(Token, {a.pk: {"status_changed_at": Now()}}) == {a.pk}
    a.refresh_from_db()
    assert a.status_changed_at > before
    with pytest.raises(ValueError, match="in every row"):
        update_from_values(Token, {a.pk: {"status_changed_at": Now()}, b.pk: {"status_changed_at": before}})


@pytest.mark.django_db
def test_insert_from_arrays_fills_the_other_columns_as_a_new_instance_would_and_skips_clashes():
    from django.db import DataError
    from django.test.utils import CaptureQueriesContext

    from glisk.core.bulk import insert_from_arrays
    from lifecycle.models import TokenTransition
    from tests.factories import AuthorFactory

    author = AuthorFactory.create()
    TokenFactory.create(token_id=2, author=author, status=S.READY)
    when = timezone.now() - timedelta(hours=1)
    with CaptureQueriesContext(connection) as queries:
        inserted = insert_from_arrays(
            Token,
            each={"token_id": [1, 2, 3], "author_id": [author.pk] * 3},
            same={"status_changed_at": when, "prompt_text": 'it\'s "quoted"'},
            skip_existing=True,
        )
    assert len(queries.captured_queries) == 1
    assert sorted(inserted) == [1, 3]  # 2 was stored: skipped, and not reported
    fresh = Token.objects.get(pk=3)
    assert (fresh.status, fresh.status_changed_at, fresh.prompt_text) == (S.DETECTED, when, 'it\'s "quoted"')
    assert fresh.metadata is None and fresh.image_attempts == 0 and fresh.created_at is not None
    assert Token.objects.get(pk=2).status == S.READY  # the stored row is untouched

    ids = insert_from_arrays(
        TokenTransition,
        each={"token_id": [1, 3], "reason": ["first", "x" * 500]},
        same={"to_status": S.DETECTED, "actor": "test", "detail": {"k": ["v"]}},
    )
    rows = {t.pk: t for t in TokenTransition.objects.filter(pk__in=ids)}
    assert {(t.token_id, t.reason[:5], t.detail["k"][0]) for t in rows.values()} == {
        (1, "first", "v"),
        (3, "xxxxx", "v"),
    }
    assert insert_from_arrays(TokenTransition, each={"token_id": []}) == []
    # Values of mixed types are prepared by the field, as the ORM prepares them (found in review).
    mixed = insert_from_arrays(
        TokenTransition, each={"token_id": [1, "3"]}, same={"to_status": "d", "actor": "t"}
    )
    assert sorted(TokenTransition.objects.filter(pk__in=mixed).values_list("token_id", flat=True)) == [1, 3]
    # A text longer than its column is refused, as the ORM refuses it, never cut.
    with pytest.raises(DataError):
        insert_from_arrays(
            TokenTransition,
            each={"token_id": [1], "reason": ["x" * 501]},
            same={"to_status": "d", "actor": "t"},
        )


@pytest.mark.django_db
def test_insert_from_arrays_writes_any_text_and_number_as_it_is():
    """Plain integers and texts go as array literals written by us: every character an array
    literal treats specially comes back as it was sent."""
    from glisk.core.bulk import insert_from_arrays
    from lifecycle.models import TokenTransition

    texts = ["", " ", "NULL", "null", 'a "quote"', "back\\slash\\", "{braces}", "a,b", "  pad  "]
    texts += ["é ✓ 🦊", "\t\n", "'single'"]
    author_id = TokenFactory.create(token_id=9).author_id
    big = 2**62
    ids = insert_from_arrays(
        TokenTransition,
        each={"token_id": [9] * len(texts), "reason": texts},
        same={"to_status": "d", "actor": "t"},
    )
    assert [TokenTransition.objects.get(pk=pk).reason for pk in ids] == texts
    tokens = insert_from_arrays(Token, each={"token_id": [big, 1], "author_id": [author_id] * 2})
    assert sorted(tokens) == [1, big]


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_skips_a_token_another_statement_holds_instead_of_waiting():
    """Found in review: the heartbeat's UPDATE and a batch's UPDATE over the same tokens locked
    them in different orders and could deadlock. A locked token is now left to the next beat."""
    import time

    from lifecycle.services.tokens import token_leases_renew

    tokens = TokenFactory.create_batch(3, status=S.GENERATING)
    token_claim(statuses=[S.GENERATING], worker_id="w1", limit=3, lease_seconds=60)
    locked, release = threading.Event(), threading.Event()

    def hold_one_row():
        from django.db import transaction

        with transaction.atomic():
            Token.objects.select_for_update().get(pk=tokens[0].pk)
            locked.set()
            release.wait(10)
        connections.close_all()

    holder = threading.Thread(target=hold_one_row)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert token_leases_renew(worker_id="w1", lease_seconds=120) == 2
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join()
    assert token_leases_renew(worker_id="w1", lease_seconds=120) == 3
