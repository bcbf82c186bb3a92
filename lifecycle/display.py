"""How token statuses look on the operators' pages (admin lists, token page, dashboard charts)."""

from __future__ import annotations

from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from lifecycle.models import TokenStatus

STATUS_COLORS: dict[str, str] = {
    TokenStatus.DETECTED: "#8e9aaf",
    TokenStatus.GENERATING: "#f4a261",
    TokenStatus.UPLOADING: "#e9c46a",
    TokenStatus.READY: "#2a9d8f",
    TokenStatus.REVEALED: "#264653",
    TokenStatus.FAILED: "#e63946",
}


def status_badge(status: str) -> SafeString:
    color = STATUS_COLORS.get(status, "#777")
    return format_html(
        '<span class="glisk-badge" style="background:{};color:#fff;padding:2px 8px;border-radius:10px;'
        'font-size:11px;font-weight:600">{}</span>',
        color,
        status,
    )


def ipfs_http_url(cid: str) -> str | None:
    """Where a browser loads `cid`: the Pinata gateway, or this service's local store (a path)."""
    if not cid:
        return None
    c = settings.GLISK
    if c.ipfs_provider == "pinata":
        return f"https://{c.pinata_gateway}/ipfs/{cid}"
    return f"/ipfs/{cid}"
