from django.contrib import admin
from django.http import HttpRequest

from glisk.admin import ReadOnlyAdmin, ReadOnlyInline
from lifecycle.models import ImageJob, IpfsRecord, Token, TokenTransition


class TransitionInline(ReadOnlyInline):
    model = TokenTransition
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


class ImageJobInline(ReadOnlyInline):
    model = ImageJob
    fields = ("created_at", "attempt", "provider", "external_id", "outcome", "duration_ms", "error")
    readonly_fields = fields


class IpfsRecordInline(ReadOnlyInline):
    model = IpfsRecord
    fields = ("created_at", "kind", "attempt", "provider", "cid", "outcome", "duration_ms", "error")
    readonly_fields = fields


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = (
        "token_id",
        "status",
        "author",
        "image_attempts",
        "ipfs_attempts",
        "reveal_attempts",
        "last_error",
        "updated_at",
    )
    list_filter = ("status", "fallback_prompt_used", "failed_stage")
    search_fields = (
        "=token_id",
        "author__wallet_address",
        "image_cid",
        "metadata_cid",
        "mint_event__tx_hash",
    )
    list_select_related = ("author",)
    inlines = (TransitionInline, ImageJobInline, IpfsRecordInline)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # status changes go through the services (operator actions), never a form


@admin.register(TokenTransition)
class TokenTransitionAdmin(ReadOnlyAdmin):
    list_display = ("token", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status", "from_status")
    search_fields = ("=token__token_id", "actor")


@admin.register(ImageJob)
class ImageJobAdmin(ReadOnlyAdmin):
    list_display = ("token", "attempt", "provider", "external_id", "outcome", "duration_ms", "created_at")
    list_filter = ("outcome", "provider", "fallback")
    search_fields = ("=token__token_id", "external_id")


@admin.register(IpfsRecord)
class IpfsRecordAdmin(ReadOnlyAdmin):
    list_display = ("token", "kind", "attempt", "provider", "cid", "outcome", "duration_ms", "created_at")
    list_filter = ("kind", "outcome", "provider")
    search_fields = ("=token__token_id", "cid")
