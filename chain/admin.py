from django.contrib import admin

from chain.models import MintEvent, RevealTransaction, SystemState, WebhookDelivery
from glisk.admin import ReadOnlyAdmin


@admin.register(MintEvent)
class MintEventAdmin(ReadOnlyAdmin):
    list_display = (
        "start_token_id",
        "quantity",
        "prompt_author",
        "minter",
        "block_number",
        "source",
        "tx_hash",
    )
    list_filter = ("source", "chain_id")
    search_fields = ("tx_hash", "minter", "prompt_author", "start_token_id")
    list_select_related = ("author",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "received_at", "event_id", "outcome", "signature_valid", "processed_at")
    list_filter = ("outcome", "signature_valid")
    search_fields = ("event_id", "webhook_id")
    exclude = ("body",)


@admin.register(RevealTransaction)
class RevealTransactionAdmin(ReadOnlyAdmin):
    list_display = ("tx_hash", "status", "nonce", "token_count", "gas_used", "block_number", "created_at")
    list_filter = ("status", "chain_id")
    search_fields = ("tx_hash", "keeper_address")
    exclude = ("raw_tx",)

    @admin.display(description="tokens")
    def token_count(self, obj: RevealTransaction) -> int:
        return len(obj.token_ids)


@admin.register(SystemState)
class SystemStateAdmin(ReadOnlyAdmin):
    list_display = ("key", "value", "updated_at")
    search_fields = ("key",)
