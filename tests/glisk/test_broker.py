"""The task queue's broker wakes an idle pusher with PostgreSQL's NOTIFY, sent when the enqueuing
transaction commits; its poll remains the fallback."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection, transaction
from django_q.conf import Conf
from django_q.tasks import async_task

from glisk.core.broker import CHANNEL, NotifyingORM
from tests.e2e.conftest import test_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def listener() -> psycopg.Connection:
    conn = psycopg.connect(test_database_url(), autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def test_queuing_a_task_notifies_listeners_when_its_transaction_commits():
    conn = listener()
    try:
        with transaction.atomic():
            async_task("glisk.core.tasks.sweep", group="test")
            assert list(conn.notifies(timeout=0.3, stop_after=1)) == []  # not before the commit
        received = list(conn.notifies(timeout=5, stop_after=1))
        assert [n.channel for n in received] == [CHANNEL]
    finally:
        conn.close()


def test_an_idle_pusher_is_woken_by_a_queued_task_not_by_its_poll(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 30.0)  # a poll this long would fail the test
    broker = NotifyingORM(list_key=Conf.CLUSTER_NAME)
    broker._listen()  # as every dequeue does first

    def enqueue_soon() -> None:
        time.sleep(0.5)
        async_task("glisk.core.tasks.sweep", group="test")
        connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=enqueue_soon)
    thread.start()
    assert broker.dequeue() is None  # the wait ended with the notification
    woke_after = time.monotonic() - started
    thread.join()
    tasks = broker.dequeue()
    assert tasks is not None and len(tasks) == 1
    assert woke_after < 15  # far less than the 30 s poll
