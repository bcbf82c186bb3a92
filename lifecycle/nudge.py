"""Enqueue stage tasks. Called inside the transaction that makes work due.

With django-q2's ORM broker the queued task is a row in our database, so the enqueue commits or
rolls back with the data that made the work due; the sweeper schedule re-nudges anything a
crash left behind.
"""

from __future__ import annotations

from django_q.tasks import async_task

STAGE_TASKS = {
    "image": "lifecycle.tasks.image_stage",
    "ipfs": "lifecycle.tasks.ipfs_stage",
    "reveal": "chain.tasks.reveal_stage",
}


def stage_nudge(*, stage: str) -> None:
    """Queue one run of `stage`'s task; it drains every due token of that stage."""
    async_task(STAGE_TASKS[stage], group=f"stage:{stage}")
