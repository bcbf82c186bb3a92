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
from typing import Any

from django.db import DatabaseError, connections
from django_q.brokers.orm import ORM
from django_q.conf import Conf

logger = logging.getLogger(__name__)

CHANNEL = "glisk_tasks"


class NotifyingORM(ORM):
    _listening_on: int | None = None  # id() of the driver connection that has LISTENed

    def enqueue(self, task: Any) -> Any:
        pk = super().enqueue(task)
        try:
            with connections[Conf.ORM].cursor() as cursor:
                cursor.execute(f"NOTIFY {CHANNEL}")
        except DatabaseError:  # the task is queued; a pusher's poll finds it
            logger.warning("broker.notify_failed", exc_info=True)
        return pk

    def dequeue(self) -> list[tuple[Any, Any]] | None:
        self._listen()
        tasks = self.get_connection().filter(key=self.list_key, lock__lt=self._now())[0 : Conf.BULK]
        if tasks:
            claimed = []
            for task in tasks:
                if self.get_connection().filter(id=task.id, lock=task.lock).update(lock=self.timeout(task)):
                    claimed.append((task.pk, task.payload))
            return claimed
        self._wait(Conf.POLL)
        return None

    @staticmethod
    def _now() -> Any:
        from django.utils import timezone

        return timezone.now()

    def _listen(self) -> None:
        connection = connections[Conf.ORM]
        try:
            connection.ensure_connection()
            raw = connection.connection
            if raw is not None and id(raw) != self._listening_on:
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
                self._listening_on = id(raw)
        except DatabaseError:
            self._listening_on = None  # the query below fails the same way and says so

    def _wait(self, seconds: float) -> None:
        """Until a notification arrives or `seconds` pass (a notification that came meanwhile is
        already buffered on the connection and ends the wait at once)."""
        import time

        raw = connections[Conf.ORM].connection
        if raw is None or id(raw) != self._listening_on or not connections[Conf.ORM].get_autocommit():
            time.sleep(seconds)
            return
        try:
            for _ in raw.notifies(timeout=seconds, stop_after=1):
                break
        except Exception:  # a dropped connection: the next dequeue reconnects and listens again
            self._listening_on = None
            time.sleep(seconds)
