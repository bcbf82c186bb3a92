"""Authors: prompts are edited here (validated), with each author's tokens by status."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from eth_utils import is_address, to_checksum_address

from authors.models import Author, SocialLink
from authors.selectors import authors_with_token_counts
from authors.services import author_prompt_changed_by_operator
from authors.social import author_social_unlink
from glisk.config import PROMPT_MAX_LENGTH


class AuthorForm(forms.ModelForm):
    # Handles are linked by their owners with a proof (X sign-in, Sign In With Farcaster); an
    # operator can only remove one, saying why.
    unlink_x_reason = forms.CharField(
        required=False,
        max_length=500,
        label="Unlink X: reason",
        help_text="Filled in: the X handle is removed, and the reason kept in the link history.",
    )
    unlink_farcaster_reason = forms.CharField(
        required=False,
        max_length=500,
        label="Unlink Farcaster: reason",
        help_text="Filled in: the Farcaster handle is removed, and the reason kept in the link history.",
    )

    class Meta:
        model = Author
        fields = ("wallet_address", "prompt_text")

    def clean_wallet_address(self) -> str:
        wallet = self.cleaned_data["wallet_address"].strip()
        if not is_address(wallet):
            raise forms.ValidationError("Enter a 0x-prefixed 20-byte address.")
        return str(to_checksum_address(wallet))

    def clean_prompt_text(self) -> str | None:
        prompt = (self.cleaned_data.get("prompt_text") or "").strip()
        if not prompt:
            return None  # no prompt: the default author's prompt is used
        if len(prompt) > PROMPT_MAX_LENGTH:
            raise forms.ValidationError(
                f"A prompt is at most {PROMPT_MAX_LENGTH} characters ({len(prompt)} given)."
            )
        return prompt


HISTORY_COLUMNS = ("when", "form", "signature", "prompt SHA-256", "nonce / operator", "client")
LINK_COLUMNS = ("when (UTC)", "account", "change", "handle", "by", "wallet proof", "proof", "reason")


def _short_actor(actor: str) -> str:
    """`wallet:0xAbCd…1234` (the whole address is in the cell's title)."""
    kind, _, who = actor.partition(":")
    return f"{kind}:{who[:6]}…{who[-4:]}" if kind == "wallet" and len(who) > 12 else actor


def _short(value: object) -> str:
    text = str(value)
    return f"{text[:6]}…{text[-4:]}" if text.startswith("0x") and len(text) > 14 else text[:40]


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    form = AuthorForm
    list_display = (
        "wallet_address",
        "tokens_total",
        "tokens_revealed",
        "tokens_in_progress",
        "tokens_failed",
        "has_prompt",
        "twitter_handle",
        "farcaster_handle",
    )
    list_filter = (("prompt_text", admin.EmptyFieldListFilter),)
    search_fields = ("wallet_address", "twitter_handle", "farcaster_handle", "prompt_text")
    readonly_fields = (
        "twitter_handle",
        "twitter_verified",
        "farcaster_handle",
        "farcaster_verified",
        "created_at",
        "updated_at",
        "token_counts",
        "prompt_history",
        "link_history",
    )
    fields = (
        "wallet_address",
        "prompt_text",
        "twitter_handle",
        "twitter_verified",
        "unlink_x_reason",
        "farcaster_handle",
        "farcaster_verified",
        "unlink_farcaster_reason",
        "token_counts",
        "prompt_history",
        "link_history",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Author]:
        # Annotate first, then order: the leaderboard orders by an annotation.
        return authors_with_token_counts().order_by(*self.get_ordering(request))

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # The authors list is a leaderboard (most tokens first); elsewhere (the token list's
        # author filter) the queryset has no annotations, so order by wallet there.
        match = request.resolver_match
        if match is not None and match.url_name == "authors_author_changelist":
            return ["-tokens_total", "wallet_address"]
        return ["wallet_address"]

    @admin.display(description="tokens", ordering="tokens_total")
    def tokens_total(self, obj: Any) -> SafeString:
        url = reverse("admin:lifecycle_token_changelist") + f"?author__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.tokens_total)

    @admin.display(description="revealed", ordering="tokens_revealed")
    def tokens_revealed(self, obj: Any) -> int:
        return int(obj.tokens_revealed)

    @admin.display(description="in progress")
    def tokens_in_progress(self, obj: Any) -> int:
        return int(obj.tokens_total - obj.tokens_revealed - obj.tokens_failed)

    @admin.display(description="failed", ordering="tokens_failed")
    def tokens_failed(self, obj: Any) -> int:
        return int(obj.tokens_failed)

    @admin.display(boolean=True, description="prompt")
    def has_prompt(self, obj: Author) -> bool:
        return bool(obj.prompt_text)

    @admin.display(description="tokens by status")
    def token_counts(self, obj: Author) -> str:
        counts = dict(obj.tokens.values_list("status").annotate(n=Count("pk")))
        return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "none yet"

    @admin.display(description="prompt updates")
    def prompt_history(self, obj: Author) -> SafeString | str:
        """Newest first; the prompt itself is kept only on the author, each update as a hash."""
        rows = list(obj.prompt_updates.all()[:20]) if obj.pk else []
        if not rows:
            return "none yet"
        body = format_html_join(
            "",
            '<tr><td>{}</td><td>{}</td><td>{}</td><td><code title="{}">{}…</code></td>'
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    u.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    u.get_form_display(),
                    u.signature_kind or "-",
                    u.prompt_sha256,
                    u.prompt_sha256[:16],
                    u.nonce or "-",
                    u.client_address or "-",
                )
                for u in rows
            ),
        )
        head = format_html_join("", "<th>{}</th>", ((h,) for h in HISTORY_COLUMNS))
        return format_html("<table><tr>{}</tr>{}</table>", head, body)

    @admin.display(description="X and Farcaster links")
    def link_history(self, obj: Author) -> SafeString | str:
        """Newest first: each link with its proof, each unlink with who and why."""
        rows = list(obj.social_links.all()[:20]) if obj.pk else []
        if not rows:
            return "none yet"
        body = format_html_join(
            "",
            '<tr><td style="white-space:nowrap">{}</td><td>{}</td><td>{}</td><td>{}</td>'
            '<td><span title="{}">{}</span></td><td>{}</td>'
            '<td style="font-size:11px">{}</td><td>{}</td></tr>',
            (
                (
                    link.created_at.astimezone(UTC).strftime("%m-%d %H:%M:%S"),
                    link.get_network_display(),
                    link.get_action_display(),
                    link.handle,
                    link.actor,
                    _short_actor(link.actor),
                    link.wallet_proof or "-",
                    format_html_join(
                        "", "<code>{}={}</code><br>", ((k, _short(v)) for k, v in sorted(link.proof.items()))
                    )
                    or "-",
                    link.reason or "-",
                )
                for link in rows
            ),
        )
        head = format_html_join("", "<th>{}</th>", ((h,) for h in LINK_COLUMNS))
        return format_html("<table><tr>{}</tr>{}</table>", head, body)

    def save_model(self, request: HttpRequest, obj: Author, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        operator = request.user.get_username()
        if "prompt_text" in form.changed_data:
            author_prompt_changed_by_operator(author=obj, operator=operator)
        for network, field in (
            (SocialLink.Network.X, "unlink_x_reason"),
            (SocialLink.Network.FARCASTER, "unlink_farcaster_reason"),
        ):
            reason = (form.cleaned_data.get(field) or "").strip()
            if reason and author_social_unlink(
                author_id=obj.pk, network=network, operator=operator, reason=reason
            ):
                messages.success(request, f"{SocialLink.Network(network).label} account unlinked: {reason}")
                obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # tokens reference their author
