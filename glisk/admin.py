"""Shared admin building blocks for the back office."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString


class ReadOnlyAdmin(admin.ModelAdmin):
    """Machine-written rows: operators read them, the pipeline writes them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """History rows shown on a parent's page, never edited there."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def pretty_json(value: Any) -> SafeString:
    return format_html(
        '<pre style="white-space:pre-wrap;margin:0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def explorer_tx_link(tx_hash: str) -> SafeString | str:
    base = settings.GLISK.explorer_url
    if not tx_hash:
        return "-"
    if not base:
        return tx_hash  # the devnet has no explorer
    return format_html('<a href="{}/tx/{}" target="_blank" rel="noopener">{}</a>', base, tx_hash, tx_hash)
