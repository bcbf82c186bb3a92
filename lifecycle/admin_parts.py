"""The token admin's list filters and the read-only inlines of a token's page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from glisk.admin import ReadOnlyInline
from lifecycle.models import (
    RETRYABLE_STAGES,
    STAGE_STATUSES,
    ImageJob,
    IpfsRecord,
    Token,
    TokenStatus,
    TokenTransition,
)
from lifecycle.selectors import stuck_q

ATTEMPTS_FIELD = {"image": "image_attempts", "ipfs": "ipfs_attempts", "reveal": "reveal_attempts"}


class StuckFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Stuck (lease expired or stage older than 15 min)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Token]) -> QuerySet[Token]:
        return queryset.filter(stuck_q()) if self.value() == "yes" else queryset


class ErrorStageFilter(admin.SimpleListFilter):
    title = "stage with errors"
    parameter_name = "error_stage"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("image", "Image"), ("ipfs", "IPFS"), ("reveal", "Reveal")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Token]) -> QuerySet[Token]:
        stage = self.value()
        if stage not in STAGE_STATUSES:
            return queryset
        statuses = STAGE_STATUSES[stage]
        retried = Q(**{f"{ATTEMPTS_FIELD[stage]}__gt": 0}, status__in=statuses)
        return queryset.filter(Q(failed_stage__in=statuses) | retried)


class ErrorClassFilter(admin.SimpleListFilter):
    """Tokens with a failed image or IPFS attempt of one error class (the errors page links here)."""

    title = "error class"
    parameter_name = "error_class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        classes: set[str] = set()
        for model in (ImageJob, IpfsRecord):
            classes |= set(
                model.objects.exclude(error_class="").values_list("error_class", flat=True).distinct()[:50]
            )
        return [(c, c) for c in sorted(classes)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Token]) -> QuerySet[Token]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(
            Q(pk__in=ImageJob.objects.filter(error_class=value).values("token_id"))
            | Q(pk__in=IpfsRecord.objects.filter(error_class=value).values("token_id"))
        )


class FailedStageFilter(admin.SimpleListFilter):
    """Only the stages a token can fail in (not every status)."""

    title = "failed stage"
    parameter_name = "failed_stage"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status.value, status.label) for status in TokenStatus if status in RETRYABLE_STAGES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Token]) -> QuerySet[Token]:
        return queryset.filter(failed_stage=self.value()) if self.value() else queryset


class TransitionInline(ReadOnlyInline):
    model = TokenTransition
    verbose_name_plural = "Status timeline"
    fields = ("created_at", "from_status", "to_status", "in_previous_status", "actor", "reason")
    readonly_fields = fields

    @admin.display(description="after")
    def in_previous_status(self, obj: TokenTransition) -> str:
        """How long the token had been in `from_status` (its stage's duration)."""
        previous = (
            TokenTransition.objects.filter(token_id=obj.token_id, created_at__lte=obj.created_at)
            .exclude(pk=obj.pk)
            .order_by("-created_at", "-pk")
            .values_list("created_at", flat=True)
            .first()
        )
        start = previous or obj.token.created_at
        return f"{max(0.0, (obj.created_at - start).total_seconds()):.1f} s"


class ImageJobInline(ReadOnlyInline):
    model = ImageJob
    verbose_name_plural = "Image attempts"
    fields = (
        "created_at",
        "attempt",
        "provider",
        "external_id",
        "fallback",
        "outcome",
        "error_class",
        "duration_ms",
        "error",
    )
    readonly_fields = fields


class IpfsRecordInline(ReadOnlyInline):
    model = IpfsRecord
    verbose_name_plural = "IPFS attempts"
    fields = (
        "created_at",
        "kind",
        "attempt",
        "provider",
        "cid",
        "size_bytes",
        "outcome",
        "error_class",
        "duration_ms",
        "error",
    )
    readonly_fields = fields
