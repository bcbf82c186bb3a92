"""Writes to authors."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from eth_utils import to_checksum_address

from authors.messages import prompt_sha256
from authors.models import Author, PromptNonce, PromptUpdate
from authors.selectors import authors_by_wallet
from glisk.core.bulk import insert_from_arrays
from glisk.core.errors import ApplicationError


def authors_ensure(*, wallets: Iterable[str]) -> tuple[dict[str, Author], int]:
    """The authors for `wallets`, creating unknown ones (with no prompt) race-safely.

    Returns a map from the lower-cased wallet to its `Author`, and how many were new.
    Concurrent callers may insert the same wallet: `ON CONFLICT DO NOTHING` against the
    case-insensitive unique index makes that harmless, and the rows are read back afterwards.
    """
    checksummed = {to_checksum_address(w) for w in wallets}
    if not checksummed:
        return {}, 0
    known = authors_by_wallet(wallets=checksummed)
    missing = sorted(w for w in checksummed if w.lower() not in known)
    if not missing:
        return known, 0
    # Counted as the rows this call inserted: a concurrent caller may have inserted some of them.
    created = insert_from_arrays(Author, each={"wallet_address": missing}, skip_existing=True)
    return authors_by_wallet(wallets=checksummed), len(created)


class PromptRefused(ApplicationError):
    """A prompt update that cannot be accepted as sent; the message says why."""

    error_type = "prompt_refused"


def prompt_nonce_issue(*, wallet: str, ttl_seconds: int) -> PromptNonce:
    """A fresh one-time nonce for `wallet`'s next bound prompt update."""
    return PromptNonce.objects.create(
        wallet_address=to_checksum_address(wallet),
        nonce=secrets.token_hex(16),
        expires_at=timezone.now() + timedelta(seconds=ttl_seconds),
    )


def prompt_nonce_usable(*, wallet: str, nonce: str) -> bool:
    """Whether `nonce` was issued to `wallet` and is unexpired and unused (a read; spending it is
    `author_prompt_set`'s, in the update's transaction)."""
    return PromptNonce.objects.filter(
        nonce=nonce, wallet_address__iexact=wallet, used_at__isnull=True, expires_at__gt=timezone.now()
    ).exists()


def nonce_spend(*, wallet: str, nonce: str) -> bool:
    """Mark `nonce` used if it was issued to `wallet` and is unexpired and unused, in one
    statement (call it inside the transaction of the write it allows). False otherwise."""
    now = timezone.now()
    return bool(
        PromptNonce.objects.filter(
            nonce=nonce, wallet_address__iexact=wallet, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
    )


def prompt_nonces_prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete nonces that expired more than `older_than` ago (anyone may ask for one)."""
    deleted, _ = PromptNonce.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted


def author_prompt_set(
    *,
    wallet: str,
    prompt_text: str,
    form: str,
    signature_kind: str = "",
    nonce: str = "",
    client_address: str | None = None,
) -> Author:
    """Set `wallet`'s prompt (creating the author if new) and keep the update as a history row.

    With `nonce` (a bound update) the nonce must have been issued to this wallet, be unexpired
    and unused; it is spent in the same transaction, so it serves exactly one update.
    """
    with transaction.atomic():
        if nonce and not nonce_spend(wallet=wallet, nonce=nonce):
            raise PromptRefused("the nonce is unknown, expired or already used: ask for a new one")
        authors, _ = authors_ensure(wallets=[wallet])
        # Under the author's row lock, so a static replay cannot slip in after a bound update.
        author = Author.objects.select_for_update().get(pk=authors[wallet.lower()].pk)
        if (
            form == PromptUpdate.Form.STATIC
            and author.prompt_updates.filter(form=PromptUpdate.Form.BOUND).exists()
        ):
            # The owner has signed a bound message: the static one (which anyone who once saw a
            # signature of it can replay) no longer changes this wallet's prompt.
            raise PromptRefused(
                "this wallet has signed a bound message before, so the static message no longer "
                f"changes its prompt: sign the bound message from GET /api/authors/{wallet}/nonce"
            )
        author.prompt_text = prompt_text
        author.save(update_fields=["prompt_text", "updated_at"])
        PromptUpdate.objects.create(
            author=author,
            form=form,
            signature_kind=signature_kind,
            prompt_sha256=prompt_sha256(prompt_text),
            nonce=nonce,
            client_address=client_address,
        )
    return author


def author_prompt_changed_by_operator(*, author: Author, operator: str) -> None:
    """Keep an operator's prompt edit (already saved on `author`) in the author's history."""
    PromptUpdate.objects.create(
        author=author,
        form=PromptUpdate.Form.OPERATOR,
        signature_kind="",
        prompt_sha256=prompt_sha256(author.prompt_text or ""),
        nonce=operator[:64],
    )
