"""Authors' X and Farcaster handles: the X sign-in's one-time state, and every link and unlink
kept as a history row. The proofs themselves are checked by the callers (the public API for X,
chain.services.farcaster for Farcaster); this module owns the rows."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from eth_utils import to_checksum_address

from authors.models import Author, SocialLink, WalletProof, XLinkRequest
from authors.services import authors_ensure, nonce_spend
from glisk.core.errors import ApplicationError
from glisk.core.state import advisory_xact_lock

logger = logging.getLogger(__name__)

HANDLE_FIELDS = {SocialLink.Network.X: "twitter_handle", SocialLink.Network.FARCASTER: "farcaster_handle"}
ACCOUNT_FIELDS = {SocialLink.Network.X: "x_user_id", SocialLink.Network.FARCASTER: "farcaster_fid"}
VERIFIED_FIELDS = {
    SocialLink.Network.X: "twitter_verified",
    SocialLink.Network.FARCASTER: "farcaster_verified",
}
STATE_FORMAT = re.compile(r"^[A-Za-z0-9_-]{20,64}$")  # what x_link_begin issues


class LinkRefused(ApplicationError):
    """A link that cannot be made as asked; the message says which check failed."""

    error_type = "link_refused"


class LinkUnavailable(ApplicationError):
    """Linking is not configured, or a service it depends on did not answer."""

    status_code = 503
    error_type = "link_unavailable"


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def x_link_begin(
    *, wallet: str, ttl_seconds: int, wallet_proof: str = WalletProof.STATIC, nonce: str = ""
) -> XLinkRequest:
    """A new X sign-in for `wallet` (already proven by its signature): a random state and PKCE
    verifier, valid for `ttl_seconds`. A bound link's `nonce` is spent here, with the sign-in.
    A static link is refused at once for a wallet whose X link is verified (the callback checks
    again, under the author's lock)."""
    with transaction.atomic():
        if nonce and not nonce_spend(wallet=wallet, nonce=nonce):
            raise LinkRefused("the nonce is unknown, expired or already used: ask for a new one")
        if wallet_proof == WalletProof.STATIC:
            _static_link_allowed(wallet=wallet, network=SocialLink.Network.X)
        return XLinkRequest.objects.create(
            state=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 characters, within RFC 7636's 43-128
            wallet_address=to_checksum_address(wallet),
            wallet_proof=wallet_proof,
            expires_at=timezone.now() + timedelta(seconds=ttl_seconds),
        )


def _static_link_allowed(*, wallet: str, network: SocialLink.Network, author: Author | None = None) -> None:
    """A static link message (replayable by anyone who once saw its signature) is refused for a
    wallet that has ever proved a link on `network` (a bound message, or Farcaster custody)."""
    if author is None:
        author = Author.objects.filter(wallet_address__iexact=wallet).first()
    # Ever, not only now: after an unlink (an operator's, or the account moved to another
    # wallet) the static message must not become good again for this wallet.
    if author is not None and (
        getattr(author, VERIFIED_FIELDS[network])
        or author.social_links.filter(
            network=network,
            action=SocialLink.Action.LINK,
            wallet_proof__in=[WalletProof.BOUND, WalletProof.CUSTODY],
        ).exists()
    ):
        label = SocialLink.Network(network).label
        raise LinkRefused(
            f"this wallet linked its {label} account with a bound message, so the static message no "
            f"longer changes it: sign the bound link message from GET /api/authors/{wallet}/nonce"
        )


def x_link_spend(*, state: str) -> XLinkRequest:
    """The sign-in `state` names, marked used in the same statement that checks it is unused and
    unexpired: a replayed or late callback gets LinkRefused ("used_state", "expired_state",
    "unknown_state") and nothing else happens."""
    now = timezone.now()
    if not STATE_FORMAT.match(state):
        raise LinkRefused("unknown_state")  # never ours (and never sent to the database)
    if XLinkRequest.objects.filter(state=state, used_at__isnull=True, expires_at__gt=now).update(used_at=now):
        return XLinkRequest.objects.get(state=state)
    found = XLinkRequest.objects.filter(state=state).first()
    if found is None:
        raise LinkRefused("unknown_state")
    raise LinkRefused("used_state" if found.used_at else "expired_state")


def x_link_requests_prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = XLinkRequest.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted


def author_social_link(
    *,
    wallet: str,
    network: str,
    account_id: str,
    handle: str,
    proof: dict[str, Any],
    wallet_proof: str,
    proof_digest: str = "",
    nonce: str = "",
    client_address: str | None = None,
) -> Author:
    """Set `wallet`'s account on `network` (its id there and its handle; the author is created if
    new) and keep the link as a history row. `wallet_proof` says how the wallet asked for it:
    only a bound or custody proof makes the handle verified (pinned into token metadata), and a
    static one is refused once the wallet's link on `network` is verified. A bound link's `nonce`
    is spent in the same transaction. An account belongs to one author: another author
    holding the same account (by id, whatever its handle is now) or the same handle loses it, with
    a history row saying why. Links of one account are serialized (an advisory lock), so two at
    once cannot both keep it. A `proof_digest` seen before is refused."""
    network = SocialLink.Network(network)
    field, account_field = HANDLE_FIELDS[network], ACCOUNT_FIELDS[network]
    actor = f"wallet:{to_checksum_address(wallet)}"
    try:
        with transaction.atomic():
            advisory_xact_lock(f"social:{network}:{account_id}")
            authors, _ = authors_ensure(wallets=[wallet])
            own = authors[wallet.lower()].pk
            # This author and every one holding the account or its handle, locked in one
            # statement in primary-key order (two links touching the same authors never deadlock).
            involved = list(
                Author.objects.select_for_update()
                .annotate(handle_lower=Lower(field))
                .filter(Q(pk=own) | Q(handle_lower=handle.lower()) | Q(**{account_field: account_id}))
                .order_by("pk")
            )
            if proof_digest and SocialLink.objects.filter(proof_digest=proof_digest).exists():
                raise LinkRefused(USED_MESSAGE)
            author = next(a for a in involved if a.pk == own)
            if wallet_proof == WalletProof.STATIC:
                _static_link_allowed(wallet=wallet, network=network, author=author)
            if nonce and not nonce_spend(wallet=wallet, nonce=nonce):
                raise LinkRefused("the nonce is unknown, expired or already used: ask for a new one")
            for other in (a for a in involved if a.pk != own):
                other_account = getattr(other, account_field)
                if other_account and other_account != account_id:
                    # Only the name: it now belongs to another account (theirs was renamed). Their
                    # account and its proof stay theirs, so a link of someone's own account
                    # never takes a verified link from another wallet.
                    _set_handle(
                        other,
                        network=network,
                        handle="",
                        account_id=other_account,
                        keep_verified=True,
                        actor=actor,
                        reason=f"the name {handle} is another account's now, linked to "
                        f"{author.wallet_address}",
                    )
                    continue
                _set_handle(
                    other,
                    network=network,
                    handle="",
                    account_id="",
                    actor=actor,
                    reason=f"linked to {author.wallet_address}",
                )
            _set_handle(
                author,
                network=network,
                handle=handle,
                account_id=account_id,
                actor=actor,
                proof=proof,
                proof_digest=proof_digest,
                wallet_proof=WalletProof(wallet_proof),
                client_address=client_address,
            )
    except IntegrityError:
        if proof_digest and SocialLink.objects.filter(proof_digest=proof_digest).exists():
            raise LinkRefused(USED_MESSAGE) from None  # the same message, by a concurrent request
        raise
    logger.info("author.social_linked", extra={"wallet": author.wallet_address, "network": str(network)})
    return author


USED_MESSAGE = "this Farcaster sign-in message was used already: sign in again"


def author_social_unlink(*, author_id: int, network: str, operator: str, reason: str) -> bool:
    """An operator removes an author's handle, with a reason. False if there was none."""
    if not reason.strip():
        raise LinkRefused("say why the account is unlinked")
    network = SocialLink.Network(network)
    with transaction.atomic():
        author = Author.objects.select_for_update().get(pk=author_id)
        if not getattr(author, HANDLE_FIELDS[network]) and not getattr(author, ACCOUNT_FIELDS[network]):
            return False
        _set_handle(
            author,
            network=network,
            handle="",
            account_id="",
            actor=f"operator:{operator}",
            reason=reason.strip(),
        )
    logger.warning("author.social_unlinked", extra={"author_id": author_id, "network": network})
    return True


def _set_handle(
    author: Author,
    *,
    network: SocialLink.Network,
    handle: str,
    account_id: str,
    actor: str,
    reason: str = "",
    proof: dict[str, Any] | None = None,
    proof_digest: str = "",
    wallet_proof: WalletProof | None = None,
    keep_verified: bool = False,
    client_address: str | None = None,
) -> None:
    """Set (or, with an empty handle, clear) the author's account on `network`, and record it.
    The handle is verified only when linked with a bound or custody proof."""
    field, account_field, verified_field = (
        HANDLE_FIELDS[network],
        ACCOUNT_FIELDS[network],
        VERIFIED_FIELDS[network],
    )
    previous = getattr(author, field)
    setattr(author, field, handle)
    setattr(author, account_field, account_id)
    if not keep_verified:
        setattr(
            author, verified_field, bool(handle) and wallet_proof in (WalletProof.BOUND, WalletProof.CUSTODY)
        )
    author.save(update_fields=[field, account_field, verified_field, "updated_at"])
    SocialLink.objects.create(
        author=author,
        network=network,
        action=SocialLink.Action.LINK if handle else SocialLink.Action.UNLINK,
        handle=(handle or previous)[:64],
        proof=proof or {},
        proof_digest=proof_digest,
        wallet_proof=wallet_proof or "",
        actor=actor[:128],
        reason=reason,
        client_address=client_address,
    )
