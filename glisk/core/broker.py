"""django-q2's ORM broker, woken by PostgreSQL's LISTEN/NOTIFY instead of only by its poll.

Every enqueue also sends `NOTIFY glisk_tasks` (delivered when the enqueuing transaction commits,
never before the task row is visible). A cluster's pusher that finds the queue empty waits for
that notification, at most one poll interval (`Q_CLUSTER["poll"]`), instead of sleeping the
whole interval: a queued stage task reaches a worker at once. Should the notification be lost (a
reconnect between LISTEN and the wait), the poll is still there, so nothing waits longer than
with the plain ORM broker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

logger = logging.getLogger(__name__)

CHANNEL = "glisk_tasks"


class NotifyingORM(ORM):
    # The driver connection that has LISTENed (a strong reference: a new connection object may
    # reuse a dropped one's id()). Not pickled with the broker: a new process listens anew.
    _listening_conn: Any = None

    def enqueue(self, task: Any) -> Any:
        pk = super().enqueue(task)
        try:
            # Its own savepoint: a failed NOTIFY must not abort the caller's transaction (which
            # holds the task row); the pushers' poll finds the task anyway.
            with transaction.atomic(using=Conf.ORM), connections[Conf.ORM].cursor() as cursor:
                cursor.execute(f"NOTIFY {CHANNEL}")
        except DatabaseError:
            logger.warning("broker.notify_failed", exc_info=True)
        return pk

    def dequeue(self) -> list[tuple[Any, Any]] | None:
        queue = self.get_connection()  # first: it may close an old connection
        raw = self._listen()
        if raw is not None:
            self._drain(raw)  # what the last wait left: the query below sees those rows anyway
        tasks = queue.filter(key=self.list_key, lock__lt=timezone.now())[0 : Conf.BULK]
        if tasks:
            claimed = []
            for task in tasks:
                if self.get_connection().filter(id=task.id, lock=task.lock).update(lock=self.timeout(task)):
                    claimed.append((task.pk, task.payload))
            return claimed
        self._wait(raw, Conf.POLL)
        return None

    def _listen(self) -> Any:
        """The connection, LISTENing; None when that failed (the query then fails and says so)."""
        connection = connections[Conf.ORM]
        try:
            connection.ensure_connection()
            raw = connection.connection
            if raw is not None and raw is not self._listening_conn:
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
                self._listening_conn = raw
            return raw if connection.get_autocommit() else None
        except DatabaseError:
            self._listening_conn = None
            return None

    @staticmethod
    def _drain(raw: Any) -> None:
        """Drop notifications already received (one per enqueue while the queue was busy), so
        that a long busy spell does not leave a backlog of empty wake-ups."""
        try:
            for _ in raw.notifies(timeout=0):
                pass
        except Exception:
            logger.debug("broker.drain_failed", exc_info=True)

    def _wait(self, raw: Any, seconds: float) -> None:
        """Until a notification arrives or `seconds` pass; a notification received meanwhile is
        buffered on the connection and ends the wait at once."""
        if raw is None or raw is not self._listening_conn:
            time.sleep(seconds)
            return
        started = time.monotonic()
        try:
            for _ in raw.notifies(timeout=seconds, stop_after=1):
                break
        except Exception:  # a dropped connection: the next dequeue reconnects and listens again
            logger.debug("broker.wait_failed", exc_info=True)
            self._listening_conn = None
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
