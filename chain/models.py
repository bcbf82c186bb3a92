from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

# uint256 fits in 78 decimal digits; wei amounts are stored exactly, never as floats.
UINT256_DIGITS = 78


def wei_field(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=UINT256_DIGITS, decimal_places=0, **kwargs)  # type: ignore[arg-type]


class MintEvent(models.Model):
    """One `BatchMinted` log: the tokens startTokenId … startTokenId + quantity - 1."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook"
        WATCHER = "watcher"
        RECOVERY = "recovery"

    chain_id = models.PositiveIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.PositiveBigIntegerField()
    block_hash = models.CharField(
        max_length=66, blank=True, default="", help_text="Empty until known (a webhook query may omit it)."
    )
    block_timestamp = models.DateTimeField(
        null=True, blank=True, help_text="The block's timestamp, not ours; empty until known."
    )
    minter = models.CharField(max_length=42)
    prompt_author = models.CharField(max_length=42)
    author = models.ForeignKey("authors.Author", on_delete=models.PROTECT, related_name="mint_events")
    start_token_id = models.PositiveBigIntegerField()
    quantity = models.PositiveIntegerField()
    total_paid_wei = wei_field()
    source = models.CharField(max_length=16, choices=Source.choices)
    delivery = models.ForeignKey(
        "chain.WebhookDelivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="mint_events"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-block_number", "-log_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="mint_event_unique_log"
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="mint_event_quantity_positive"),
            models.CheckConstraint(
                condition=models.Q(start_token_id__gte=1), name="mint_event_start_id_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(total_paid_wei__gte=0), name="mint_event_paid_nonnegative"
            ),
            models.CheckConstraint(
                condition=models.Q(tx_hash__regex=r"^0x[0-9a-f]{64}$"), name="mint_event_tx_hash_format"
            ),
        ]
        indexes = [models.Index(fields=["block_number"], name="mint_event_block_idx")]

    def __str__(self) -> str:
        return f"BatchMinted #{self.start_token_id}+{self.quantity} ({self.tx_hash[:10]}…)"

    @property
    def token_ids(self) -> range:
        return range(self.start_token_id, self.start_token_id + self.quantity)


class WebhookDelivery(models.Model):
    """The raw body and headers of every webhook request, whatever became of it. Replayable."""

    class Outcome(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        REJECTED_SIGNATURE = "rejected_signature"
        MALFORMED = "malformed"
        CAPACITY_ERROR = "capacity_error"
        FAILED = "failed"

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    event_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    webhook_id = models.CharField(max_length=128, blank=True, default="")
    headers = models.JSONField(default=dict)
    body = models.BinaryField(
        help_text="The exact bytes received (the signature covers them); only the first few KiB of "
        "a delivery whose signature did not verify."
    )
    body_size = models.PositiveIntegerField(default=0, help_text="Bytes received.")
    body_sha256 = models.CharField(max_length=64, blank=True, default="")
    body_truncated = models.BooleanField(default=False)
    signature_valid = models.BooleanField(null=True)
    outcome = models.CharField(
        max_length=24, choices=Outcome.choices, default=Outcome.RECEIVED, db_index=True
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    replay_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.outcome})"


class RevealTransaction(models.Model):
    """One signed `revealTokens` transaction from the keeper, from signing to confirmation."""

    class Status(models.TextChoices):
        SIGNED = "signed"
        SENT = "sent"
        CONFIRMED = "confirmed"
        FAILED = "failed"
        REPLACED = "replaced"

    ACTIVE = (Status.SIGNED, Status.SENT)

    chain_id = models.PositiveIntegerField()
    keeper_address = models.CharField(max_length=42)
    nonce = models.PositiveBigIntegerField()
    token_ids = ArrayField(models.PositiveBigIntegerField())
    token_uris = ArrayField(models.TextField(), default=list)
    raw_tx = models.BinaryField()
    tx_hash = models.CharField(max_length=66, unique=True)
    max_fee_per_gas_wei = wei_field()
    max_priority_fee_per_gas_wei = wei_field()
    gas_limit = models.PositiveBigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SIGNED, db_index=True)
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    effective_gas_price_wei = wei_field(null=True, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One live transaction per keeper nonce; a replacement retires the one it replaces first.
            models.UniqueConstraint(
                fields=["chain_id", "keeper_address", "nonce"],
                condition=models.Q(status__in=["signed", "sent"]),
                name="reveal_tx_one_active_per_nonce",
            ),
            models.UniqueConstraint(
                fields=["chain_id", "keeper_address", "nonce"],
                condition=models.Q(status="confirmed"),
                name="reveal_tx_one_confirmed_per_nonce",
            ),
            models.CheckConstraint(
                condition=models.Q(tx_hash__regex=r"^0x[0-9a-f]{64}$"), name="reveal_tx_hash_format"
            ),
            models.CheckConstraint(condition=models.Q(gas_limit__gt=0), name="reveal_tx_gas_limit_positive"),
        ]

    def __str__(self) -> str:
        return f"reveal {self.tx_hash[:10]}… nonce {self.nonce} ({self.status})"

    @property
    def cost_wei(self) -> int | None:
        if self.gas_used is None or self.effective_gas_price_wei is None:
            return None
        return int(self.gas_used) * int(self.effective_gas_price_wei)
