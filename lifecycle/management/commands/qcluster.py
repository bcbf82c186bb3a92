"""`manage.py qcluster`: django-q2's cluster, with the pipeline's schedules and start-up work.

Before the cluster starts it makes sure the sweeper and watcher schedules exist (idempotently:
any number of clusters may start against one database) and queues the start-up work: token
recovery, the log watcher and one sweep.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django_q.management.commands.qcluster import Command as DjangoQCluster
from django_q.models import Schedule
from django_q.tasks import async_task

SCHEDULES = {
    "glisk.sweeper": ("lifecycle.tasks.sweep", 1),
    "glisk.watcher": ("chain.tasks.watcher", 1),
}


def ensure_schedules() -> None:
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )


class Command(DjangoQCluster):
    help = "Run a django-q2 cluster for the GLISK pipeline (stages, keeper, watcher, sweeper)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            ensure_schedules()
            async_task("chain.tasks.recover_on_start", group="startup")
            async_task("chain.tasks.watcher", group="startup")
            async_task("lifecycle.tasks.sweep", group="startup")
        super().handle(*args, **options)
