"""`manage.py qcluster`: django-q2's cluster, with the pipeline's schedules and start-up work.

Before the cluster starts it frees the leases of this machine's workers that died (a cluster
killed and restarted here picks their tokens up at once), makes sure the sweeper and watcher
schedules exist (idempotently: any number of clusters may start against one database) and queues
the start-up work: token recovery, the log watcher and one sweep that nudges past the debounce.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string
from django_q.management.commands.qcluster import Command as DjangoQCluster
from django_q.tasks import async_task

from glisk.core.schedules import STARTUP_LOCAL, STARTUP_TASKS, ensure_schedules


class Command(DjangoQCluster):
    help = "Run a django-q2 cluster for the GLISK pipeline (stages, keeper, watcher, sweeper)."

    def handle(self, *args: Any, **options: Any) -> None:
        for func in STARTUP_LOCAL:
            import_string(func)()
        with transaction.atomic():
            ensure_schedules()
            for func in STARTUP_TASKS:
                async_task(func, group="startup")
        super().handle(*args, **options)
