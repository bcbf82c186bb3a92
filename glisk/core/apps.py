from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: durable system state, stage nudges, schedules, the cluster command."""

    name = "glisk.core"
    label = "core"
    verbose_name = "System"

    def ready(self) -> None:
        from django_q.signals import post_execute

        from glisk.core.clusters import task_executed

        # Each cluster counts the tasks it ran (the clusters page), in its monitor process.
        post_execute.connect(task_executed, dispatch_uid="glisk.clusters.task_executed")
