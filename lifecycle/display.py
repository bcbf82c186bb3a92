"""How token statuses look on the operators' pages (admin lists, token page, dashboard charts)."""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString

STATUS_COLORS = {
    "detected": "#8e9aaf",
    "generating": "#f4a261",
    "uploading": "#e9c46a",
    "ready": "#2a9d8f",
    "revealed": "#264653",
    "failed": "#e63946",
}


def status_badge(status: str) -> SafeString:
    color = STATUS_COLORS.get(status, "#777")
    return format_html(
        '<span class="glisk-badge" style="background:{};color:#fff;padding:2px 8px;border-radius:10px;'
        'font-size:11px;font-weight:600">{}</span>',
        color,
        status,
    )
