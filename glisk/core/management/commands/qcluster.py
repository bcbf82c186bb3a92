"""`manage.py qcluster`: django-q2's cluster, with the pipeline's schedules and start-up work.

Before the cluster starts it makes sure the sweeper and watcher schedules exist (idempotently:
any number of clusters may start against one database) and queues the start-up work: token
recovery, the log watcher and one sweep.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django_q.management.commands.qcluster import Command as DjangoQCluster
from django_q.tasks import async_task

from glisk.core.schedules import STARTUP_TASKS, ensure_schedules


class Command(DjangoQCluster):
    help = "Run a django-q2 cluster for the GLISK pipeline (stages, keeper, watcher, sweeper)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            ensure_schedules()
            for func in STARTUP_TASKS:
                async_task(func, group="startup")
        super().handle(*args, **options)
