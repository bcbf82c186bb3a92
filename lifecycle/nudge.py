"""Enqueue stage tasks. Called inside the transaction that makes work due.

With django-q2's ORM broker the queued task is a row in our database, so the enqueue commits or
rolls back with the data that made the work due; the sweeper schedule re-nudges anything a
crash left behind.

Nudges are debounced: while one task of a stage is queued and not yet started, further nudges
add nothing (each task drains every due token of its stage, so one is enough). Without this, a
5,000-token run queued ~10,000 no-op tasks that buried the keeper's. A task clears the flag as it
starts, so work that becomes due while it runs always gets a task of its own; and a flag whose
task never started (its cluster died) expires after NUDGE_DEBOUNCE_SECONDS.
"""

from __future__ import annotations

import json
import time

from django.db import connection
from django_q.tasks import async_task

STAGE_TASKS = {
    "image": "lifecycle.tasks.image_stage",
    "ipfs": "lifecycle.tasks.ipfs_stage",
    "reveal": "chain.tasks.reveal_stage",
}
NUDGE_DEBOUNCE_SECONDS = 15.0


def _key(stage: str) -> str:
    return f"nudge.{stage}"


def stage_nudge(*, stage: str) -> bool:
    """Queue one run of `stage`'s task unless one is already queued. Returns whether it queued."""
    now = time.time()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO chain_systemstate (key, value, updated_at) VALUES (%s, %s, now())
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
            WHERE COALESCE((chain_systemstate.value->>'queued_until')::float8, 0) < %s
            RETURNING key
            """,
            [_key(stage), json.dumps({"queued_until": now + NUDGE_DEBOUNCE_SECONDS}), now],
        )
        if cursor.fetchone() is None:
            return False
    async_task(STAGE_TASKS[stage], group=f"stage:{stage}")
    return True


def stage_started(*, stage: str) -> None:
    """A task of `stage` is running: the next nudge must queue another."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE chain_systemstate SET value = %s, updated_at = now() WHERE key = %s",
            [json.dumps({"queued_until": 0}), _key(stage)],
        )
