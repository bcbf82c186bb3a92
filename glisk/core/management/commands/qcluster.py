"""`manage.py qcluster`: django-q2's cluster, with the pipeline's schedules and start-up work.

Before the cluster starts it frees the leases of this machine's workers that died (a cluster
killed and restarted here picks their tokens up at once), makes sure the sweeper and watcher
schedules exist (idempotently: any number of clusters may start against one database) and queues
the start-up work: token recovery, the log watcher and one sweep that nudges past the debounce.

First of all it waits for the database and its schema (up to `--wait-for-database` seconds,
saying so every few seconds): a worker started on another machine, or a container started with
the database, begins once the database answers and `migrate` has run, instead of crashing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils.module_loading import import_string
from django_q.management.commands.qcluster import Command as DjangoQCluster
from django_q.tasks import async_task

from glisk.core.database import database_problem, waiting_cannot_help
from glisk.core.schedules import STARTUP_LOCAL, STARTUP_TASKS, ensure_schedules

logger = logging.getLogger(__name__)
SAY_EVERY = 5.0


def database_waiting_for() -> str:
    """Why the cluster cannot start yet: "" once the database answers with every migration applied."""
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        connection.close()
        return database_problem(exc)
    if pending:
        return f"the database lacks {len(pending)} migrations (run `manage.py migrate`)"
    return ""


class Command(DjangoQCluster):
    help = "Run a django-q2 cluster for the GLISK pipeline (stages, keeper, watcher, sweeper)."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--wait-for-database",
            type=float,
            default=120.0,
            metavar="SECONDS",
            help="how long to wait for the database and its migrations before giving up (default 120)",
        )

    def wait_for_database(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        said = 0.0
        while waiting_for := database_waiting_for():
            now = time.monotonic()
            if waiting_cannot_help(waiting_for):
                raise CommandError(f"{waiting_for}: check DATABASE_URL")
            if now > deadline:
                raise CommandError(f"gave up after waiting {seconds:g} s: {waiting_for}")
            if now - said >= SAY_EVERY:
                logger.warning("qcluster.waiting", extra={"for": waiting_for})
                said = now
            time.sleep(1.0)

    def handle(self, *args: Any, **options: Any) -> None:
        self.wait_for_database(options.pop("wait_for_database", 120.0))
        for func in STARTUP_LOCAL:
            import_string(func)()
        with transaction.atomic():
            ensure_schedules()
            for func in STARTUP_TASKS:
                async_task(func, group="startup")
        super().handle(*args, **options)
