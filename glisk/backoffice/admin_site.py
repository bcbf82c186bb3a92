"""The admin site: the index page is the operators' dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from glisk.backoffice.charts import bar_chart
from glisk.backoffice.selectors import dashboard_get
from lifecycle.display import STATUS_COLORS


class GliskAdminSite(admin.AdminSite):
    site_header = "GLISK back office"
    site_title = "GLISK"
    index_title = "Dashboard"
    site_url = None  # no public site here: "View site" would lead to a JSON 404

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        board = dashboard_get()
        status_chart = bar_chart(
            [(s, n, STATUS_COLORS[s]) for s, n in board.counts.items()], title="Tokens by status"
        )
        hourly_chart = bar_chart(
            [(h.strftime("%H"), n, "#264653") for h, n in board.revealed_per_hour],
            title="Tokens revealed per hour (last 24 h, UTC)",
            label_every=3,
        )
        context = {
            "board": board,
            "status_chart": status_chart,
            "hourly_chart": hourly_chart,
            **(extra_context or {}),
        }
        return super().index(request, context)
