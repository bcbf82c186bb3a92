"""The django-q2 schedules and start-up tasks every cluster ensures (by dotted path)."""

from __future__ import annotations

from django_q.models import Schedule

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
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
