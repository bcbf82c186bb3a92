"""The django-q2 schedules and start-up tasks every cluster ensures (by dotted path)."""

from __future__ import annotations

from django.db import transaction
from django_q.models import Schedule

from glisk.core.state import advisory_xact_lock

# name → (task, every N minutes). django-q2 checks schedules only about every 30 s: they are
# the safety net, the nudges do the work.
SCHEDULES = {
    "glisk.sweeper": ("glisk.core.tasks.sweep", 1),
    "glisk.watcher": ("chain.tasks.watcher", 1),
    "glisk.prune_webhooks": ("chain.tasks.prune_webhooks", 24 * 60),
    "glisk.prune_prompt_nonces": ("authors.tasks.prune_nonces", 24 * 60),
}
STARTUP_TASKS = ("chain.tasks.recover_on_start", "chain.tasks.watcher", "glisk.core.tasks.startup_sweep")
# Run by the starting cluster itself, before it queues anything: work that must happen on its
# own machine (named by dotted path, like the stages).
STARTUP_LOCAL = ("lifecycle.tasks.release_dead_worker_leases",)


def ensure_schedules() -> None:
    """One schedule per name, however many clusters start at once. django-q2 does not make the
    name unique, so clusters starting together on a fresh database used to create two of each,
    and every later start then failed (update_or_create found two): serialize the starts, and
    remove duplicates an earlier version left."""
    with transaction.atomic():
        advisory_xact_lock("glisk.schedules")
        for name, (func, minutes) in SCHEDULES.items():
            ids = list(Schedule.objects.filter(name=name).order_by("id").values_list("id", flat=True))
            if len(ids) > 1:
                Schedule.objects.filter(id__in=ids[1:]).delete()
            Schedule.objects.update_or_create(
                name=name,
                defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
            )
