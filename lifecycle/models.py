from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class TokenStatus(models.TextChoices):
    DETECTED = "detected"
    GENERATING = "generating"
    UPLOADING = "uploading"
    READY = "ready"
    REVEALED = "revealed"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({TokenStatus.REVEALED, TokenStatus.FAILED})
ACTIVE_STATUSES = frozenset(set(TokenStatus) - TERMINAL_STATUSES)
# Statuses an operator's retry may return a failed token to (the stage that failed).
RETRYABLE_STAGES = frozenset(
    {TokenStatus.DETECTED, TokenStatus.GENERATING, TokenStatus.UPLOADING, TokenStatus.READY}
)

# The one map of legal status changes. `failed` is reachable from every non-terminal state;
# an operator's retry is the one way out of it. Backward edges are operator actions
# (regenerate, re-pin) and the mint correction (the chain names another author: back to
# `detected`), never taken by a stage.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    TokenStatus.DETECTED: frozenset({TokenStatus.GENERATING, TokenStatus.REVEALED, TokenStatus.FAILED}),
    TokenStatus.GENERATING: frozenset(
        {TokenStatus.DETECTED, TokenStatus.UPLOADING, TokenStatus.REVEALED, TokenStatus.FAILED}
    ),
    TokenStatus.UPLOADING: frozenset(
        {
            TokenStatus.DETECTED,
            TokenStatus.READY,
            TokenStatus.GENERATING,
            TokenStatus.REVEALED,
            TokenStatus.FAILED,
        }
    ),
    TokenStatus.READY: frozenset(
        {
            TokenStatus.DETECTED,
            TokenStatus.REVEALED,
            TokenStatus.GENERATING,
            TokenStatus.UPLOADING,
            TokenStatus.FAILED,
        }
    ),
    TokenStatus.REVEALED: frozenset(),
    TokenStatus.FAILED: RETRYABLE_STAGES | {TokenStatus.REVEALED},
}


# The stages that move tokens forward, and the statuses each one works on. Core's stage registry
# (glisk.core.stages) names the same stages; everything that maps a status to a stage uses this.
STAGE_STATUSES: dict[str, tuple[str, ...]] = {
    # In the order a stage claims them: tokens whose generation started (a dead worker's) first.
    "image": (TokenStatus.GENERATING, TokenStatus.DETECTED),
    "ipfs": (TokenStatus.UPLOADING,),
    "reveal": (TokenStatus.READY,),
}
STAGE_OF: dict[str, str] = {
    status: stage for stage, statuses in STAGE_STATUSES.items() for status in statuses
}


class Token(models.Model):
    """One on-chain token and where it is in the pipeline."""

    Status = TokenStatus

    token_id = models.PositiveBigIntegerField(primary_key=True, help_text="The on-chain token id.")
    # Indexed with the token id below (token_author_idx), not alone.
    author = models.ForeignKey(
        "authors.Author", on_delete=models.PROTECT, related_name="tokens", db_index=False
    )
    mint_event = models.ForeignKey(
        "chain.MintEvent", null=True, blank=True, on_delete=models.PROTECT, related_name="tokens"
    )
    status = models.CharField(max_length=16, choices=TokenStatus.choices, default=TokenStatus.DETECTED)
    status_changed_at = models.DateTimeField(default=timezone.now)
    failed_stage = models.CharField(
        max_length=16,
        choices=TokenStatus.choices,
        blank=True,
        default="",
        help_text="The status the token failed from; a retry returns it there.",
    )

    prompt_text = models.TextField(blank=True, default="", help_text="The prompt actually used.")
    fallback_prompt_used = models.BooleanField(default=False)
    image = models.FileField(upload_to="images/%Y/%m/%d/", blank=True, default="")
    image_content_type = models.CharField(max_length=64, blank=True, default="")
    image_cid = models.CharField(max_length=128, blank=True, default="", db_index=True)
    metadata_cid = models.CharField(max_length=128, blank=True, default="", db_index=True)
    metadata = models.JSONField(null=True, blank=True)
    reveal_transaction = models.ForeignKey(
        "chain.RevealTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="tokens"
    )

    image_attempts = models.PositiveIntegerField(default=0)
    ipfs_attempts = models.PositiveIntegerField(default=0)
    reveal_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_error_detail = models.JSONField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    revealed_at = models.DateTimeField(null=True, blank=True)
    reveal_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="An operator asked to reveal without waiting for the batch."
    )
    mint_disputed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A mint log (or the keeper's read of the chain) contradicted the stored author or "
        "mint transaction. The token is not revealed until the watcher has re-read the chain with "
        "its confirmations and settled it.",
    )

    class Meta:
        ordering = ["token_id"]
        permissions = [("operate_token", "Can retry, regenerate, re-pin, reveal now and fail tokens")]
        constraints = [
            models.CheckConstraint(condition=models.Q(token_id__gte=1), name="token_id_positive"),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in TokenStatus]), name="token_status_valid"
            ),
        ]
        indexes = [
            # The stage queue: due tokens of one status.
            # A stage's claim reads this in its ORDER BY, one status at a time, and stops at its
            # LIMIT: no sort, however many tokens are due at the same instant.
            models.Index(fields=["status", "next_attempt_at", "token_id"], name="token_queue_idx"),
            models.Index(fields=["status", "status_changed_at"], name="token_status_age_idx"),
            models.Index(
                fields=["lease_expires_at"], name="token_lease_idx", condition=~models.Q(claimed_by="")
            ),
            models.Index(
                fields=["mint_disputed_at"],
                name="token_disputed_idx",
                condition=models.Q(mint_disputed_at__isnull=False),
            ),
            # /metrics: the oldest unrevealed token, and the mint → reveal histogram's range.
            models.Index(
                fields=["created_at"],
                name="token_unfinished_age_idx",
                condition=~models.Q(status__in=["revealed", "failed"]),
            ),
            models.Index(fields=["revealed_at"], name="token_revealed_at_idx"),
            # An author's tokens newest first, a page at a time, and how many they have (counted
            # from this index alone): the list every collector watching a reveal polls.
            models.Index(fields=["author", "token_id"], name="token_author_idx"),
        ]

    def __str__(self) -> str:
        return f"token #{self.token_id} ({self.status})"


class TokenTransition(models.Model):
    """Append-only history of a token's status changes: from, to, why and who."""

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16)
    reason = models.CharField(max_length=500, blank=True, default="")
    actor = models.CharField(max_length=128, help_text="stage:<name>, operator:<username>, recovery, …")
    detail = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["token", "created_at"], name="transition_token_time_idx")]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class AttemptOutcome(models.TextChoices):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    TRANSIENT_ERROR = "transient_error"
    PERMANENT_ERROR = "permanent_error"
    CONTENT_POLICY = "content_policy"


class ImageJob(models.Model):
    """One attempt at generating a token's image."""

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="image_jobs")
    attempt = models.PositiveIntegerField()
    provider = models.CharField(max_length=32)
    prompt_text = models.TextField()
    fallback = models.BooleanField(default=False)
    external_id = models.CharField(max_length=128, blank=True, default="", help_text="Prediction id.")
    outcome = models.CharField(max_length=24, choices=AttemptOutcome.choices, default=AttemptOutcome.STARTED)
    error = models.TextField(blank=True, default="")
    error_class = models.CharField(max_length=64, blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    image_bytes = models.PositiveIntegerField(null=True, blank=True)
    image_path = models.CharField(
        max_length=255, blank=True, default="", help_text="Where the bytes were stored."
    )
    content_type = models.CharField(max_length=64, blank=True, default="")
    # The database's clock, as the token's status_changed_at: "made since the token entered its
    # stage" must not depend on which machine's clock wrote which (a skewed worker would pay twice).
    created_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        # /metrics counts attempts by outcome and error class: an index-only scan, not the table.
        indexes = [
            models.Index(fields=["outcome", "error_class"], name="image_job_outcome_idx"),
            models.Index(fields=["finished_at"], name="image_job_finished_idx"),  # /metrics' histogram
        ]

    def __str__(self) -> str:
        return f"image job {self.pk} for #{self.token_id} ({self.outcome})"


class IpfsRecord(models.Model):
    """One attempt at pinning a token's image or metadata."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        METADATA = "metadata"

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="ipfs_records")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    attempt = models.PositiveIntegerField()
    provider = models.CharField(max_length=32)
    cid = models.CharField(max_length=128, blank=True, default="")
    size_bytes = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=24, choices=AttemptOutcome.choices, default=AttemptOutcome.STARTED)
    error = models.TextField(blank=True, default="")
    error_class = models.CharField(max_length=64, blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())  # the database's clock (see ImageJob)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "IPFS record"
        indexes = [
            models.Index(fields=["outcome", "error_class"], name="ipfs_record_outcome_idx"),
            models.Index(fields=["finished_at"], name="ipfs_record_finished_idx"),  # /metrics' histogram
        ]

    def __str__(self) -> str:
        return f"{self.kind} pin {self.pk} for #{self.token_id} ({self.outcome})"
