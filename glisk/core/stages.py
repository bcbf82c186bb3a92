"""The pipeline's stages as every app sees them: which task drains each, how to tell it has work,
and the debounced nudge that queues that task.

Stages are named here, not imported: core knows the dotted paths of the owners' tasks and
probes, and resolves them only when it runs them, so no app has to import another to wake it.

Nudges are called inside the transaction that makes work due. With django-q2's ORM broker the
queued task is a row in our database, so the enqueue commits or rolls back with that data; the
sweeper re-nudges anything a crash left behind.

Nudges are debounced: while one task of a stage is queued and not yet started, further nudges add
nothing (each task drains every due token of its stage, so one is enough). Without this, a
5,000-token run queued ~10,000 no-op tasks that buried the keeper's. A task clears the flag as it
starts, so work that becomes due while it runs always gets a task of its own; and a flag whose
task never started (its cluster died) expires after NUDGE_DEBOUNCE_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils.module_loading import import_string
from django_q.tasks import async_task

from glisk.core.models import SystemState

NUDGE_DEBOUNCE_SECONDS = 15.0


@dataclass(frozen=True)
class Stage:
    task: str  # the django-q2 task that drains the stage
    pending: str  # a function () -> int: how much work the stage could do now


STAGES: dict[str, Stage] = {
    "image": Stage(task="lifecycle.tasks.image_stage", pending="lifecycle.selectors.image_due_count"),
    "ipfs": Stage(task="lifecycle.tasks.ipfs_stage", pending="lifecycle.selectors.ipfs_due_count"),
    "reveal": Stage(task="chain.tasks.reveal_stage", pending="chain.selectors.reveal_pending_count"),
}


def _key(stage: str) -> str:
    return f"nudge.{stage}"


def stage_nudge(*, stage: str, force: bool = False) -> bool:
    """Queue one run of `stage`'s task unless one is already queued. Returns whether it queued.
    `force`: queue one even so (a cluster starting: the queued one may have died with another).

    The flag's row stays locked until the caller's transaction ends, debounced or not: a queued
    task that starts meanwhile clears the flag only after that commit, so it sees the work this
    transaction made due. Without the lock it could start, find nothing, and leave that work to
    the sweeper.
    """
    task = STAGES[stage].task
    now = time.time()
    flag = {"queued_until": now + NUDGE_DEBOUNCE_SECONDS}
    with transaction.atomic(savepoint=False):  # usually inside its caller's: no savepoint needed
        row, created = SystemState.objects.select_for_update().get_or_create(
            key=_key(stage), defaults={"value": flag}
        )
        if not created:
            queued_until = row.value.get("queued_until") if isinstance(row.value, dict) else None
            if not force and isinstance(queued_until, int | float) and queued_until >= now:
                return False
            SystemState.objects.filter(key=_key(stage)).update(value=flag)
        async_task(task, group=f"stage:{stage}")
    return True


def stage_waiting(*, stage: str, longer_than: float) -> bool:
    """Whether a task of `stage` was queued more than `longer_than` seconds ago and has still not
    started: no worker was free for it (with a free one it starts within a poll)."""
    flag = SystemState.objects.filter(key=_key(stage)).values_list("value", flat=True).first()
    queued_until = flag.get("queued_until") if isinstance(flag, dict) else None
    if not isinstance(queued_until, int | float):
        return False
    now = time.time()
    queued_at = queued_until - NUDGE_DEBOUNCE_SECONDS
    return queued_until >= now and queued_at <= now - longer_than


def stage_started(*, stage: str) -> None:
    """A task of `stage` is running: the next nudge must queue another."""
    SystemState.objects.filter(key=_key(stage)).update(value={"queued_until": 0})


def stage_pending(*, stage: str) -> int:
    """How much work `stage` could do now, from its owner's probe."""
    probe: Callable[[], int] = import_string(STAGES[stage].pending)
    return int(probe())
