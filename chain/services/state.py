"""SystemState: small durable values (cursors) and advisory locks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection

from chain.models import SystemState


def state_get(*, key: str, default: Any = None) -> Any:
    row = SystemState.objects.filter(key=key).values_list("value", flat=True).first()
    return default if row is None else row


def state_set(*, key: str, value: Any) -> None:
    SystemState.objects.update_or_create(key=key, defaults={"value": value})


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
