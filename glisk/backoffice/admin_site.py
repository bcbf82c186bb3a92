"""The admin site: the index page is the operators' dashboard (refreshing itself), plus the
errors page (failures grouped by stage and error class) and the clusters page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from glisk.backoffice.charts import bar_chart
from glisk.backoffice.selectors import RANGES, backlog_eta, dashboard_get, error_groups, stage_activity
from glisk.core.budgets import budgets_status
from glisk.core.clusters import clusters_refresh
from lifecycle.display import STATUS_COLORS

REFRESH_SECONDS = 10
BAR_LABELS = {"1h": ("%H:%M", 10), "24h": ("%H", 3), "7d": ("%a %d", 1)}


class GliskAdminSite(admin.AdminSite):
    site_header = "GLISK back office"
    site_title = "GLISK"
    index_title = "Dashboard"
    site_url = None  # no public site here: "View site" would lead to a JSON 404

    def _dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        span = request.GET.get("range", "24h")
        span = span if span in RANGES else "24h"
        board = dashboard_get(span=span)
        status_chart = bar_chart(
            [(s, n, STATUS_COLORS[s]) for s, n in board.counts.items()], title="Tokens by status"
        )
        label, every = BAR_LABELS[span]
        hourly_chart = bar_chart(
            [(h.strftime(label), n, "#264653") for h, n in board.revealed_per_hour],
            title=f"Tokens revealed, last {span} (UTC)",
            label_every=every,
        )
        return {
            "board": board,
            "status_chart": status_chart,
            "hourly_chart": hourly_chart,
            "span": span,
            "spans": list(RANGES),
            "refresh_seconds": REFRESH_SECONDS,
            "stages": stage_activity(),
            "budgets": budgets_status(),
            "backlog": backlog_eta(),
        }

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        figures = self._dashboard_context(request) if _may_see_tokens(request) else {}
        return super().index(request, {**figures, **(extra_context or {})})

    def dashboard_fragment(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's figures and charts alone: the index page swaps them in every few seconds."""
        _require_tokens_view(request)
        return TemplateResponse(
            request, "admin/glisk/dashboard_fragment.html", self._dashboard_context(request)
        )

    def errors_view(self, request: HttpRequest) -> TemplateResponse:
        _require_tokens_view(request, "lifecycle.view_imagejob", "chain.view_revealtransaction")
        groups = error_groups()
        tokens_url = reverse("admin:lifecycle_token_changelist")
        context = {
            **self.each_context(request),
            "title": "Errors by stage and class",
            "groups": groups,
            "tokens_url": tokens_url,
        }
        return TemplateResponse(request, "admin/glisk/errors.html", context)

    def clusters_view(self, request: HttpRequest) -> TemplateResponse:
        _require_tokens_view(request)
        context = {**self.each_context(request), "title": "Clusters", "clusters": clusters_refresh()}
        return TemplateResponse(request, "admin/glisk/clusters.html", context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("dashboard/", self.admin_view(self.dashboard_fragment), name="glisk_dashboard"),
            path("errors/", self.admin_view(self.errors_view), name="glisk_errors"),
            path("clusters/", self.admin_view(self.clusters_view), name="glisk_clusters"),
            *super().get_urls(),
        ]


def _may_see_tokens(request: HttpRequest, *more: str) -> bool:
    return bool(request.user.has_perms(["lifecycle.view_token", *more]))


def _require_tokens_view(request: HttpRequest, *more: str) -> None:
    """The console's pages show what the token (and attempt) lists show: the same permissions."""
    if not _may_see_tokens(request, *more):
        raise PermissionDenied
