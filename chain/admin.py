"""Back office for what the chain side writes: mint events, webhook deliveries, reveal transactions."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chain.models import MintEvent, RevealTransaction, WebhookDelivery
from chain.services.webhooks import WebhookRejected, webhook_delivery_replay
from glisk.admin import ReadOnlyAdmin, explorer_tx_link, pretty_json


def token_links(token_ids: list[int], limit: int = 60) -> SafeString:
    shown = format_html_join(
        ", ",
        '<a href="{}">#{}</a>',
        ((reverse("admin:lifecycle_token_change", args=[i]), i) for i in token_ids[:limit]),
    )
    if len(token_ids) > limit:
        return format_html("{} … (+{})", shown, len(token_ids) - limit)
    return shown


@admin.register(MintEvent)
class MintEventAdmin(ReadOnlyAdmin):
    list_display = (
        "start_token_id",
        "quantity",
        "prompt_author",
        "minter",
        "block_number",
        "source",
        "tx_link",
        "created_at",
    )
    list_filter = ("source", "chain_id")
    search_fields = ("tx_hash", "minter", "prompt_author", "=start_token_id")
    list_select_related = ("author",)
    readonly_fields = ("tx_link", "tokens", "paid_eth")

    @admin.display(description="transaction")
    def tx_link(self, obj: MintEvent) -> SafeString | str:
        return explorer_tx_link(obj.tx_hash)

    @admin.display(description="tokens")
    def tokens(self, obj: MintEvent) -> SafeString:
        return token_links(list(obj.token_ids))

    @admin.display(description="paid (ETH)")
    def paid_eth(self, obj: MintEvent) -> str:
        return f"{Decimal(obj.total_paid_wei) / Decimal(10**18):.6f}"


PARSED_BODY_MAX = 256 * 1024


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "received_at",
        "event_id",
        "outcome",
        "signature_valid",
        "body_size",
        "new_tokens",
        "processed_at",
        "replay_count",
    )
    list_filter = ("outcome", "signature_valid")
    search_fields = ("event_id", "webhook_id", "error")
    exclude = ("body", "headers", "result")
    readonly_fields = ("body_pretty", "headers_pretty", "result_pretty")
    actions = ["replay"]

    @admin.display(description="new tokens")
    def new_tokens(self, obj: WebhookDelivery) -> Any:
        return obj.result.get("tokens_new", "-") if isinstance(obj.result, dict) else "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "chain_webhookdelivery_changelist":
            return queryset.defer("body", "headers")  # a list never loads bodies
        return queryset

    @admin.display(description="body")
    def body_pretty(self, obj: WebhookDelivery) -> SafeString:
        """Parsed only when the signature verified and it is small; otherwise shown as text (a
        hostile body could be nested deep enough to crash a JSON parser)."""
        raw = bytes(obj.body)
        note = f" (first {len(raw)} of {obj.body_size} bytes)" if obj.body_truncated else ""
        if obj.signature_valid and len(raw) <= PARSED_BODY_MAX:
            try:
                return pretty_json(json.loads(raw))
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
        text = raw[:20000].decode("utf-8", errors="replace")
        return format_html('<pre style="white-space:pre-wrap">{}</pre>{}', text, note)

    @admin.display(description="headers")
    def headers_pretty(self, obj: WebhookDelivery) -> SafeString:
        return pretty_json(obj.headers)

    @admin.display(description="result")
    def result_pretty(self, obj: WebhookDelivery) -> SafeString:
        return pretty_json(obj.result)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("lifecycle.operate_token"))

    @admin.action(description="Replay the selected deliveries (idempotent)", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        new_tokens = replayed = 0
        for delivery_id in queryset.values_list("pk", flat=True):
            try:
                summary = webhook_delivery_replay(delivery_id=delivery_id)
            except WebhookRejected as exc:
                self.message_user(request, f"delivery {delivery_id} refused: {exc}", messages.ERROR)
                continue
            replayed += 1
            new_tokens += int(summary.get("tokens_new", 0) or 0)
        if replayed:
            self.message_user(
                request, f"replayed {replayed} deliveries: {new_tokens} new tokens", messages.SUCCESS
            )


@admin.register(RevealTransaction)
class RevealTransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "tx_link",
        "status",
        "nonce",
        "token_count",
        "gas_used",
        "cost_eth",
        "block_number",
        "created_at",
    )
    list_filter = ("status", "chain_id")
    search_fields = ("tx_hash", "keeper_address")
    exclude = ("raw_tx", "token_ids", "token_uris")
    readonly_fields = ("tx_link", "tokens", "fees", "cost_eth")

    @admin.display(description="transaction")
    def tx_link(self, obj: RevealTransaction) -> SafeString | str:
        return explorer_tx_link(obj.tx_hash)

    @admin.display(description="tokens")
    def token_count(self, obj: RevealTransaction) -> int:
        return len(obj.token_ids)

    @admin.display(description="tokens")
    def tokens(self, obj: RevealTransaction) -> SafeString:
        return token_links(list(obj.token_ids))

    @admin.display(description="fees (gwei)")
    def fees(self, obj: RevealTransaction) -> str:
        g = Decimal(10**9)
        text = (
            f"max {Decimal(obj.max_fee_per_gas_wei) / g:.6f}, "
            f"priority {Decimal(obj.max_priority_fee_per_gas_wei) / g:.6f}"
        )
        if obj.effective_gas_price_wei is not None:
            text += f", paid {Decimal(obj.effective_gas_price_wei) / g:.6f}"
        return text

    @admin.display(description="cost (ETH)")
    def cost_eth(self, obj: RevealTransaction) -> str:
        return "-" if obj.cost_wei is None else f"{Decimal(obj.cost_wei) / Decimal(10**18):.8f}"
