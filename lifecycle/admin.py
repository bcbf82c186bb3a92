"""The operators' back office for tokens: find a late or failed token, see why, fix it in one click."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from glisk.admin import ReadOnlyAdmin, explorer_tx_link, pretty_json
from lifecycle.admin_parts import (
    ErrorClassFilter,
    ErrorStageFilter,
    FailedStageFilter,
    ImageJobInline,
    IpfsRecordInline,
    StuckFilter,
    TransitionInline,
)
from lifecycle.display import status_badge
from lifecycle.models import (
    ImageJob,
    IpfsRecord,
    Token,
    TokenTransition,
)
from lifecycle.providers.images import sniff_content_type
from lifecycle.providers.ipfs import is_cid
from lifecycle.selectors import reveal_now_preview
from lifecycle.services.operator import ACTIONS, ActionRefused, applicable_actions

ACTION_LABELS = {
    "retry": "Retry from the stage that failed",
    "regenerate": "Regenerate the image",
    "repin": "Re-pin image and metadata",
    "reveal_now": "Reveal now, alone (skip the batch wait)…",
    "mark_failed": "Mark failed",
}


def _cid_in(term: str) -> str:
    """The CID in `ipfs://<cid>`, `https://<gateway>/ipfs/<cid>[/…]` or a bare CID, else ""."""
    match = re.fullmatch(r"(?:ipfs://|https?://[^/]+/ipfs/)?([A-Za-z0-9]{46,})(?:[/?#].*)?", term)
    return match.group(1) if match and is_cid(match.group(1)) else ""


def gateway_url(cid: str) -> str:
    if settings.GLISK.ipfs_provider == "pinata":
        return f"https://{settings.GLISK.pinata_gateway}/ipfs/{cid}"
    return reverse("ipfs-gateway", args=[cid])


class TokenActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=300,
        label="Reason",
        widget=forms.TextInput(attrs={"placeholder": "why (recorded in the timeline)"}),
    )


# Actions that cannot be undone ask first, on a page that says exactly what will happen.
CONFIRMED_ACTIONS = {"reveal_now"}


def _make_action(name: str) -> Callable[..., HttpResponse | None]:
    def action(
        modeladmin: TokenAdmin, request: HttpRequest, queryset: QuerySet[Token]
    ) -> HttpResponse | None:
        token_ids = list(queryset.values_list("pk", flat=True))
        if name in CONFIRMED_ACTIONS and request.POST.get("confirmed") != "yes":
            return modeladmin.confirmation(request, name, token_ids, request.POST.get("reason", ""))
        modeladmin.run_action(request, name, token_ids, request.POST.get("reason", ""))
        return None

    action.__name__ = f"action_{name}"
    return admin.action(description=ACTION_LABELS[name], permissions=["operate"])(action)


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    # Every column fits at 1400 px with the navigation and filters shown (seen in Chromium).
    list_display = (
        "token_id",
        "badge",
        "author_short",
        "thumbnail",
        "attempts",
        "short_error",
        "age",
        "updated",
    )
    list_filter = (
        "status",
        ErrorStageFilter,
        StuckFilter,
        ("mint_disputed_at", admin.EmptyFieldListFilter),
        "fallback_prompt_used",
        FailedStageFilter,
        ErrorClassFilter,
        "author",
    )
    search_fields = (
        "=token_id",
        "author__wallet_address",
        "mint_event__tx_hash",
        "reveal_transaction__tx_hash",
        "image_cid",
        "metadata_cid",
    )
    list_select_related = ("author",)
    list_per_page = 50
    ordering = ("-token_id",)  # newest first
    action_form = TokenActionForm
    actions = [_make_action(name) for name in ACTIONS]
    inlines = (TransitionInline, ImageJobInline, IpfsRecordInline)
    change_form_template = "admin/lifecycle/token/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "token_id",
                    "badge",
                    "author_link",
                    "image_preview",
                    "prompt_text",
                    "fallback_prompt_used",
                )
            },
        ),
        ("IPFS", {"fields": ("image_links", "metadata_links", "metadata_pretty")}),
        ("Chain", {"fields": ("mint_link", "mint_disputed_at", "reveal_link")}),
        (
            "Pipeline",
            {
                "fields": (
                    "attempts",
                    "next_attempt_at",
                    "claimed_by",
                    "lease_expires_at",
                    "failed_stage",
                    "last_error",
                    "last_error_pretty",
                    "created_at",
                    "status_changed_at",
                    "revealed_at",
                    "reveal_requested_at",
                )
            },
        ),
    )
    # Every field on the token page is read-only: derived from the fieldsets, not listed twice.
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])  # type: ignore[misc]

    # --- permissions: rows are machine-written; operators act through the actions -----------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("lifecycle.operate_token"))

    # --- columns ----------------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def badge(self, obj: Token) -> SafeString:
        return status_badge(obj.status)

    @admin.display(description="author", ordering="author__wallet_address")
    def author_short(self, obj: Token) -> SafeString:
        """`0xAbCd…1234`, the whole address in the link's title."""
        url = reverse("admin:authors_author_change", args=[obj.author_id])
        wallet = obj.author.wallet_address
        return format_html('<a href="{}" title="{}">{}…{}</a>', url, wallet, wallet[:6], wallet[-4:])

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: Token) -> str:
        from lifecycle.templatetags.humanize_glisk import duration

        return f"{duration(timezone.now() - obj.updated_at)} ago"

    @admin.display(description="author", ordering="author__wallet_address")
    def author_link(self, obj: Token) -> SafeString:
        url = reverse("admin:authors_author_change", args=[obj.author_id])
        return format_html('<a href="{}">{}</a>', url, obj.author.wallet_address)

    @admin.display(description="image")
    def thumbnail(self, obj: Token) -> SafeString | str:
        if not obj.image:
            return "-"
        url = reverse("admin:lifecycle_token_image", args=[obj.pk])
        return format_html(
            '<img src="{}" alt="#{}" width="48" height="48" loading="lazy" '
            'style="border-radius:4px;object-fit:cover">',
            url,
            obj.pk,
        )

    @admin.display(description="tries img/ipfs/rev")
    def attempts(self, obj: Token) -> str:
        return f"{obj.image_attempts} / {obj.ipfs_attempts} / {obj.reveal_attempts}"

    @admin.display(description="last error")
    def short_error(self, obj: Token) -> str:
        return (obj.last_error[:48] + "…") if len(obj.last_error) > 48 else (obj.last_error or "-")

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Token) -> str:
        from lifecycle.templatetags.humanize_glisk import duration

        return duration(timezone.now() - obj.created_at)

    # --- the token page -----------------------------------------------------------------------
    @admin.display(description="image")
    def image_preview(self, obj: Token) -> SafeString | str:
        if not obj.image:
            return "not generated yet"
        url = reverse("admin:lifecycle_token_image", args=[obj.pk])
        return format_html(
            '<img src="{}" alt="token #{}" style="max-width:320px;border-radius:6px"> <div>{}</div>',
            url,
            obj.pk,
            obj.image_content_type,
        )

    def _cid_links(self, cid: str) -> SafeString | str:
        if not cid:
            return "-"
        return format_html(
            '<code>ipfs://{}</code> · <a href="{}" target="_blank" rel="noopener">gateway</a>',
            cid,
            gateway_url(cid),
        )

    @admin.display(description="image CID")
    def image_links(self, obj: Token) -> SafeString | str:
        return self._cid_links(obj.image_cid)

    @admin.display(description="metadata CID")
    def metadata_links(self, obj: Token) -> SafeString | str:
        return self._cid_links(obj.metadata_cid)

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: Token) -> SafeString | str:
        return pretty_json(obj.metadata) if obj.metadata else "-"

    @admin.display(description="error detail")
    def last_error_pretty(self, obj: Token) -> SafeString | str:
        return pretty_json(obj.last_error_detail) if obj.last_error_detail else "-"

    @admin.display(description="mint transaction")
    def mint_link(self, obj: Token) -> SafeString | str:
        return explorer_tx_link(obj.mint_event.tx_hash) if obj.mint_event is not None else "- (recovered)"

    @admin.display(description="reveal transaction")
    def reveal_link(self, obj: Token) -> SafeString | str:
        tx = obj.reveal_transaction
        if tx is None:
            return "-"
        url = reverse("admin:chain_revealtransaction_change", args=[tx.pk])
        return format_html(
            '<a href="{}">{}</a> ({}) · {}', url, tx.pk, tx.status, explorer_tx_link(tx.tx_hash)
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Token]:
        return super().get_queryset(request).select_related("author", "mint_event", "reveal_transaction")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Token], search_term: str
    ) -> tuple[QuerySet[Token], bool]:
        term = search_term.strip().lstrip("#")
        if re.fullmatch(r"[0-9]{1,19}", term):  # ASCII digits only ("²".isdigit() is true)
            return queryset.filter(token_id=int(term)), False  # a number is a token id, not a wallet fragment
        cid = _cid_in(term)
        if cid:  # as the token page shows it: ipfs://<cid>, a gateway URL, or the bare CID
            return queryset.filter(Q(image_cid=cid) | Q(metadata_cid=cid)), False
        if re.fullmatch(r"0x[0-9a-fA-F]{64}", term):
            tx = term.lower()
            return queryset.filter(
                Q(mint_event__tx_hash__iexact=tx) | Q(reveal_transaction__tx_hash__iexact=tx)
            ), False
        if re.fullmatch(r"0x[0-9a-fA-F]{40}", term):
            return queryset.filter(author__wallet_address__iexact=term), False
        return super().get_search_results(request, queryset, search_term)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        token = context.get("original")
        names = applicable_actions(token) if token is not None else []
        context["operator_actions"] = [(name, ACTION_LABELS[name]) for name in names]
        context["can_operate"] = self.has_operate_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    # --- actions ----------------------------------------------------------------------------
    def run_action(self, request: HttpRequest, name: str, token_ids: list[int], reason: str) -> None:
        operator = request.user.get_username()
        done: list[str] = []
        refused: list[str] = []
        for token_id in token_ids:
            try:
                done.append(ACTIONS[name](token_id=token_id, operator=operator, reason=reason))
            except ActionRefused as exc:
                refused.append(str(exc))
                continue
            # The admin's History button lists it too (the timeline has it with the reason).
            self.log_change(request, Token(pk=token_id), f"{ACTION_LABELS[name]}: {done[-1]}")
        if done:
            self.message_user(
                request,
                "; ".join(done[:10]) + (f" (+{len(done) - 10} more)" if len(done) > 10 else ""),
                messages.SUCCESS,
            )
        for text in refused[:10]:
            self.message_user(request, f"refused: {text}", messages.ERROR)

    def get_urls(self) -> list[URLPattern]:
        urls = [
            path(
                "<int:token_id>/image/",
                self.admin_site.admin_view(self.image_view),
                name="lifecycle_token_image",
            ),
            path(
                "<int:token_id>/act/<str:action>/",
                self.admin_site.admin_view(self.act_view),
                name="lifecycle_token_act",
            ),
        ]
        return urls + super().get_urls()

    def image_view(self, request: HttpRequest, token_id: int) -> HttpResponse:
        """The stored image, for operators who may view tokens: only bytes that are an image,
        with the type they sniff as, never the provider's declared type (which could be HTML)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        token = get_object_or_404(Token, pk=token_id)
        if not token.image:
            raise Http404("no image")
        try:
            with token.image.open("rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise Http404("image file missing") from None
        content_type = sniff_content_type(data, fallback="")
        if not content_type:
            raise Http404("the stored file is not an image")
        response = HttpResponse(data, content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="glisk-{token.pk}"'
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response

    @method_decorator(require_POST)
    def act_view(self, request: HttpRequest, token_id: int, action: str) -> HttpResponse:
        """The token page's buttons: POST only, permission-gated, then back to the page."""
        if action not in ACTIONS:
            raise Http404("no such action")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        if action in CONFIRMED_ACTIONS and request.POST.get("confirmed") != "yes":
            return self.confirmation(request, action, [token_id], request.POST.get("reason", ""))
        self.run_action(request, action, [token_id], request.POST.get("reason", ""))
        return HttpResponseRedirect(reverse("admin:lifecycle_token_change", args=[token_id]))

    def confirmation(
        self, request: HttpRequest, action: str, token_ids: list[int], reason: str
    ) -> HttpResponse:
        """What a "reveal now" will send: the chosen tokens that are ready, in one transaction of
        their own (with any others operators already asked to reveal now), nothing else."""
        chosen = reveal_now_preview(token_ids=token_ids)
        context = {
            **self.admin_site.each_context(request),
            "title": "Reveal now: please confirm",
            "opts": self.model._meta,
            "action": action,
            "label": ACTION_LABELS[action],
            "reason": reason,
            "preview": chosen,
            "token_ids": token_ids,
            "single": len(token_ids) == 1,
            "form_url": reverse("admin:lifecycle_token_act", args=[token_ids[0], action])
            if len(token_ids) == 1
            else reverse("admin:lifecycle_token_changelist"),
        }
        return TemplateResponse(request, "admin/lifecycle/token/confirm_action.html", context)


@admin.register(TokenTransition)
class TokenTransitionAdmin(ReadOnlyAdmin):
    list_display = ("token", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status", "from_status")
    search_fields = ("=token__token_id", "actor", "reason")


@admin.register(ImageJob)
class ImageJobAdmin(ReadOnlyAdmin):
    list_display = (
        "token",
        "attempt",
        "provider",
        "external_id",
        "fallback",
        "outcome",
        "error_class",
        "duration_ms",
        "created_at",
    )
    list_filter = ("outcome", "provider", "fallback", "error_class")
    search_fields = ("=token__token_id", "external_id")


@admin.register(IpfsRecord)
class IpfsRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "token",
        "kind",
        "attempt",
        "provider",
        "cid",
        "outcome",
        "error_class",
        "duration_ms",
        "created_at",
    )
    list_filter = ("kind", "outcome", "provider", "error_class")
    search_fields = ("=token__token_id", "cid")
