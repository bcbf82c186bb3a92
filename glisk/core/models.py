from __future__ import annotations

from django.db import models


class SystemState(models.Model):
    """Small durable key → JSON values: the log watcher's cursor, stage nudge flags, heartbeats."""

    key = models.CharField(max_length=128, primary_key=True)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        verbose_name = "system state"
        verbose_name_plural = "system state"

    def __str__(self) -> str:
        return self.key


class StoredFile(models.Model):
    """A file kept in PostgreSQL (`FILE_STORAGE=database`): every worker on every machine reads
    the same bytes, with no service beyond the database they already share."""

    name = models.CharField(max_length=255, unique=True)
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProviderBudget(models.Model):
    """One provider account's request budget, shared by every worker on every machine: a token
    bucket whose rate and burst come from the settings (`glisk.core.budgets`). `tokens` may be
    negative: requests admitted ahead of time, each told how long to wait for its turn."""

    name = models.CharField(max_length=64, primary_key=True)
    tokens = models.FloatField(default=0.0)
    updated_at = models.DateTimeField()
    paused_until = models.DateTimeField(null=True, blank=True)
    admitted = models.FloatField(default=0.0, help_text="units admitted, all time")
    throttled = models.BigIntegerField(default=0, help_text="429 answers received, all time")
    throttled_seconds = models.FloatField(default=0.0, help_text="pauses the provider announced, all time")
    waited_seconds = models.FloatField(default=0.0, help_text="time requests waited for their turn")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
