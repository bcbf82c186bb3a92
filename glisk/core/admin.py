from __future__ import annotations

from django.contrib import admin

from glisk.admin import ReadOnlyAdmin
from glisk.core.models import SystemState


@admin.register(SystemState)
class SystemStateAdmin(ReadOnlyAdmin):
    list_display = ("key", "value", "updated_at")
    search_fields = ("key",)
