from __future__ import annotations

from django.db import models
from django.db.models.functions import Length, Lower

from glisk.config import PROMPT_MAX_LENGTH

# Lets constraints say `prompt_text__length__lte`.
models.TextField.register_lookup(Length)


class Author(models.Model):
    """A prompt author: minters name one, and its prompt drives the token's image."""

    wallet_address = models.CharField(max_length=42, help_text="EIP-55 checksummed address.")
    # NULL means "no prompt", distinct from an invalid empty prompt.
    prompt_text = models.TextField(  # noqa: DJ001
        null=True,
        blank=True,
        help_text=f"1-{PROMPT_MAX_LENGTH} characters; empty means the default author's prompt.",
    )
    twitter_handle = models.CharField(max_length=64, blank=True, default="")
    farcaster_handle = models.CharField(max_length=64, blank=True, default="")
    # The accounts behind the handles (set by a proven link): an account is one author's only,
    # whatever it is called now.
    x_user_id = models.CharField(
        max_length=32, blank=True, default="", help_text="X's id of the linked account."
    )
    farcaster_fid = models.CharField(
        max_length=32, blank=True, default="", help_text="The linked Farcaster fid."
    )
    # Whether the wallet's side of each link is proven beyond the replayable static message: only
    # then does the handle go into pinned token metadata (which can never be corrected).
    twitter_verified = models.BooleanField(
        default=False,
        help_text="The X link was signed with a bound (nonce) message: its handle is pinned into "
        "token metadata.",
    )
    farcaster_verified = models.BooleanField(
        default=False,
        help_text="The Farcaster link was signed with a bound message, or the fid's custody address "
        "is this wallet: its handle is pinned into token metadata.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["wallet_address"]
        constraints = [
            models.UniqueConstraint(Lower("wallet_address"), name="author_wallet_unique_ci"),
            models.CheckConstraint(
                condition=models.Q(wallet_address__regex=r"^0x[0-9a-fA-F]{40}$"),
                name="author_wallet_format",
            ),
            models.CheckConstraint(
                condition=models.Q(prompt_text__isnull=True)
                | models.Q(prompt_text__length__gte=1, prompt_text__length__lte=PROMPT_MAX_LENGTH),
                name="author_prompt_length",
            ),
            models.UniqueConstraint(
                fields=["x_user_id"], condition=~models.Q(x_user_id=""), name="author_x_account_once"
            ),
            models.UniqueConstraint(
                fields=["farcaster_fid"],
                condition=~models.Q(farcaster_fid=""),
                name="author_farcaster_fid_once",
            ),
        ]

    def __str__(self) -> str:
        return self.wallet_address


class PromptNonce(models.Model):
    """A one-time number an author's bound message (a prompt update or an account link) must
    carry (replay protection)."""

    wallet_address = models.CharField(max_length=42, help_text="EIP-55 checksummed address.")
    nonce = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["expires_at"], name="prompt_nonce_expiry_idx")]

    def __str__(self) -> str:
        return f"nonce for {self.wallet_address}"


class PromptUpdate(models.Model):
    """One accepted prompt change: when, how it was signed, and a hash of the prompt (never the
    text: only the author's current prompt is kept, on the author)."""

    class Form(models.TextChoices):
        STATIC = "static", "static message (replayable)"
        BOUND = "bound", "bound message (nonce, chain, prompt hash, expiry)"
        OPERATOR = "operator", "operator in the admin"

    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="prompt_updates")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    form = models.CharField(max_length=16, choices=Form.choices)
    signature_kind = models.CharField(
        max_length=16, blank=True, default="", help_text="eoa, erc1271 or erc6492; empty for operators."
    )
    prompt_sha256 = models.CharField(max_length=64)
    nonce = models.CharField(
        max_length=64, blank=True, default="", help_text="The bound message's nonce, or the operator."
    )
    client_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"prompt update of {self.author} ({self.form})"


class WalletProof(models.TextChoices):
    """How a link proved that the wallet wanted it."""

    STATIC = "static", "static message (replayable)"
    BOUND = "bound", "bound message (nonce, chain, expiry)"
    CUSTODY = "custody", "the wallet is the fid's custody address"


class XLinkRequest(models.Model):
    """An X sign-in in progress: the OAuth `state` and PKCE verifier, kept here so that any web
    worker can finish the flow and a restart loses nothing. Used once; expires in minutes."""

    state = models.CharField(max_length=64, unique=True)
    code_verifier = models.CharField(max_length=128)
    wallet_address = models.CharField(max_length=42, help_text="EIP-55 checksummed address.")
    wallet_proof = models.CharField(max_length=16, choices=WalletProof.choices, default=WalletProof.STATIC)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["expires_at"], name="x_link_request_expiry_idx")]

    def __str__(self) -> str:
        return f"X sign-in for {self.wallet_address}"


class SocialLink(models.Model):
    """One change of an author's X or Farcaster handle: who made it, when, and the proof."""

    class Network(models.TextChoices):
        X = "x", "X"
        FARCASTER = "farcaster", "Farcaster"

    class Action(models.TextChoices):
        LINK = "link", "linked"
        UNLINK = "unlink", "unlinked"

    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="social_links")
    network = models.CharField(max_length=16, choices=Network.choices)
    action = models.CharField(max_length=8, choices=Action.choices)
    handle = models.CharField(max_length=64, help_text="The handle linked, or the one removed.")
    proof = models.JSONField(
        default=dict,
        blank=True,
        help_text="X: the account id X answered for the signed-in user. Farcaster: the fid, the "
        "custody address that signed, the message's domain and nonce. Empty for operators.",
    )
    proof_digest = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="SHA-256 of a Farcaster sign-in message: each is accepted once.",
    )
    wallet_proof = models.CharField(
        max_length=16,
        choices=WalletProof.choices,
        blank=True,
        default="",
        help_text="How the wallet asked for the link; empty for unlinks.",
    )
    actor = models.CharField(max_length=128, help_text="wallet:<address> or operator:<name>.")
    reason = models.TextField(blank=True, default="")
    client_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["proof_digest"],
                condition=~models.Q(proof_digest=""),
                name="social_link_proof_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.network} {self.action} {self.handle} for {self.author}"
