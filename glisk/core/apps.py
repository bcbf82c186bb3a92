from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: durable system state, stage nudges, schedules, the cluster command."""

    name = "glisk.core"
    label = "core"
    verbose_name = "System"
