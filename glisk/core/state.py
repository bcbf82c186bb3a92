"""SystemState values (cursors, flags, heartbeats) and PostgreSQL advisory locks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection

from glisk.core.models import SystemState


def state_get(*, key: str, default: Any = None) -> Any:
    row = SystemState.objects.filter(key=key).values_list("value", flat=True).first()
    return default if row is None else row


def state_get_for_update(*, key: str, default: Any = None) -> Any:
    """`state_get` with the key's row locked (created if missing) until the transaction ends:
    writers of one key take turns."""
    row, _ = SystemState.objects.select_for_update().get_or_create(key=key, defaults={"value": default})
    return row.value


def state_set(*, key: str, value: Any) -> None:
    SystemState.objects.update_or_create(key=key, defaults={"value": value})


def state_delete(*, key: str) -> None:
    SystemState.objects.filter(key=key).delete()


@contextlib.contextmanager
def advisory_lock(name: str) -> Iterator[bool]:
    """Try a session-level PostgreSQL advisory lock named `name`; yields whether we got it.

    Held until the block ends, or until the connection dies with its process, so a killed
    holder never blocks the others for longer than its connection lives.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [name])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])


def advisory_xact_lock(name: str) -> None:
    """Take a transaction-level advisory lock named `name` (waits; released at commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])
