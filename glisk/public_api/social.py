"""Authors link their X and Farcaster accounts (the web frontend's contract):

* `POST /api/authors/x/auth/start` `{wallet_address, message, signature}`, `message` exactly
  `Link X account for wallet: <checksummed address>` or the bound link message (see
  authors.messages) → `{authorization_url}` (X's OAuth 2.0 page, PKCE S256, a one-time `state`
  kept in the database);
* `GET /api/authors/x/callback?code=…&state=…` → 307 to
  `<FRONTEND_URL>/profile?tab=author&x_linked=true&username=<name>`, or `x_linked=false&error=<reason>`;
* `POST /api/authors/farcaster/link` `{wallet_address, wallet_message, wallet_signature,
  farcaster_message, farcaster_signature, fid, username}`, `wallet_message` exactly
  `Link Farcaster account for wallet: <checksummed address>` or the bound link message →
  `{username, fid}`.

Only a link whose wallet side is proven beyond the static message (a bound message, or a
Farcaster fid whose custody address is the wallet) puts the handle into pinned token metadata.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseRedirectBase
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authors.messages import parse_bound_link, static_link_message
from authors.models import SocialLink, WalletProof
from authors.social import LinkRefused, LinkUnavailable, author_social_link, x_link_begin, x_link_spend
from authors.x_api import XClient
from chain.services.farcaster import FarcasterChecker
from chain.services.signatures import wallet_signature_verify_from_settings
from glisk.api import ErrorOutput
from glisk.public_api.prompts import PROMPT_BODY_MAX, PayloadTooLarge, StrictText, bound_problem
from glisk.public_api.throttles import SocialClientThrottle, client_address
from glisk.public_api.views import wallet_checksummed

logger = logging.getLogger(__name__)


class _SmallJsonApi(APIView):
    parser_classes = [JSONParser]
    throttle_classes = [SocialClientThrottle]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if int(request.META.get("CONTENT_LENGTH") or 0) > PROMPT_BODY_MAX:
            raise PayloadTooLarge(f"the body is larger than {PROMPT_BODY_MAX} bytes")
        super().initial(request, *args, **kwargs)


def _wallet_asked(wallet: str, message: str, signature: str, *, network: str) -> tuple[WalletProof, str]:
    """The wallet signed (`personal_sign`) the static link message for `network` or a bound one
    for this wallet, network and chain, unexpired: the form and the bound message's nonce (which
    the caller spends with the link), or a refusal saying what is wrong."""
    static = static_link_message(wallet=wallet, network=network)
    if message == static:
        if not settings.GLISK.author_accept_static_message:
            raise LinkRefused(
                f"the static message is not accepted here: sign the bound link message from "
                f"GET /api/authors/{wallet}/nonce"
            )
        form, nonce = WalletProof.STATIC, ""
    else:
        bound = parse_bound_link(message)
        if bound is None:
            raise LinkRefused(
                f"message must be exactly {static!r} or the bound link message from "
                f"GET /api/authors/{wallet}/nonce"
            )
        if bound.network != network:
            raise LinkRefused(f"the message links another network, not {SocialLink.Network(network).label}")
        if problem := bound_problem(bound, wallet=wallet):
            raise LinkRefused(problem)
        form, nonce = WalletProof.BOUND, bound.nonce
    wallet_signature_verify_from_settings(wallet=wallet, message=message, signature=signature)
    return form, nonce


# --- X ----------------------------------------------------------------------------------------


class XStartInput(serializers.Serializer):
    wallet_address = StrictText()
    message = StrictText(trim_whitespace=False)
    signature = StrictText()


class XStartOutput(serializers.Serializer):
    authorization_url = serializers.URLField()


class XAuthStartApi(_SmallJsonApi):
    @extend_schema(
        request=XStartInput,
        responses={200: XStartOutput, 400: ErrorOutput, 403: ErrorOutput, 429: ErrorOutput, 503: ErrorOutput},
        summary="Start linking an X account to a wallet (answers X's authorization URL)",
        description=(
            "`message` is exactly `Link X account for wallet: <checksummed address>` (replayable: "
            "the handle shows on the profile but is not pinned into token metadata) or the bound "
            "link message (`link_messages.x` of `GET /api/authors/{wallet}/nonce`), signed with "
            "`personal_sign` (EOA, ERC-1271 or ERC-6492). Send the browser to `authorization_url`; "
            "X returns it to `GET /api/authors/x/callback`, which redirects to the frontend's "
            "profile page with `x_linked=true&username=…` or `x_linked=false&error=…`. 503 while "
            "X is not configured here."
        ),
    )
    def post(self, request: Request) -> Response:
        client = XClient.from_settings()
        data = XStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = wallet_checksummed(data.validated_data["wallet_address"])
        form, nonce = _wallet_asked(
            wallet,
            data.validated_data["message"],
            data.validated_data["signature"],
            network=SocialLink.Network.X,
        )
        ttl = settings.GLISK.social_link_ttl_seconds
        sign_in = x_link_begin(wallet=wallet, ttl_seconds=ttl, wallet_proof=form, nonce=nonce)
        url = client.authorization_url(state=sign_in.state, code_verifier=sign_in.code_verifier)
        response = Response({"authorization_url": url})
        # The browser that starts the sign-in must be the one X sends back (else anyone could send
        # a victim their own authorization URL and collect the victim's X account): a cookie with
        # the state's hash, for the callback's path only.
        response.set_cookie(
            BROWSER_COOKIE,
            _state_hash(sign_in.state),
            max_age=ttl,
            path="/api/authors/x/",
            secure=request.is_secure(),
            httponly=True,
            samesite="Lax",
        )
        return response


BROWSER_COOKIE = "glisk_x_sign_in"


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class TemporaryRedirect(HttpResponseRedirectBase):
    status_code = 307


def _back_to_frontend(**query: str) -> HttpResponse:
    return TemporaryRedirect(f"{settings.GLISK.frontend_url}/profile?{urlencode({'tab': 'author', **query})}")


@extend_schema(
    parameters=[
        OpenApiParameter("code", str, OpenApiParameter.QUERY, required=False),
        OpenApiParameter("state", str, OpenApiParameter.QUERY, required=False),
        OpenApiParameter("error", str, OpenApiParameter.QUERY, required=False),
    ],
    responses={307: None, 503: ErrorOutput},
    summary="X's OAuth callback: links the account, then redirects (307) to the frontend",
)
@require_GET
def x_callback(request: HttpRequest) -> HttpResponse:
    """Every outcome is a redirect the frontend understands; the `state` is spent first, so a
    replayed callback (or one after the user declined) does nothing."""
    try:
        client = XClient.from_settings()
    except LinkUnavailable as exc:
        if settings.GLISK.frontend_url:
            return _back_to_frontend(x_linked="false", error="not_configured")
        message = str(exc)
        return JsonResponse(
            {"detail": message, "error": {"type": exc.error_type, "message": message}}, status=503
        )
    state = request.GET.get("state", "")
    # As bytes: a cookie with non-ASCII characters made compare_digest raise (a 500).
    cookie = request.COOKIES.get(BROWSER_COOKIE, "").encode("utf-8", "surrogateescape")
    if settings.GLISK.x_require_same_browser and not hmac.compare_digest(cookie, _state_hash(state).encode()):
        # Not the browser that started this sign-in (or its cookie expired): nothing is spent.
        return _back_to_frontend(x_linked="false", error="browser_mismatch")
    try:
        sign_in = x_link_spend(state=state)
    except LinkRefused as exc:
        return _back_to_frontend(x_linked="false", error=str(exc))
    if request.GET.get("error"):
        return _back_to_frontend(x_linked="false", error="denied")  # the user declined at X
    code = request.GET.get("code", "")
    if not code:
        return _back_to_frontend(x_linked="false", error="missing_code")
    try:
        user_id, username = client.username_for_code(code=code[:2048], code_verifier=sign_in.code_verifier)
        author_social_link(
            wallet=sign_in.wallet_address,
            network=SocialLink.Network.X,
            account_id=user_id,
            handle=username,
            proof={"x_user_id": user_id},
            wallet_proof=sign_in.wallet_proof,
            client_address=client_address(request),
        )
    except (LinkRefused, LinkUnavailable) as exc:
        return _back_to_frontend(x_linked="false", error=str(exc))
    response = _back_to_frontend(x_linked="true", username=username)
    response.delete_cookie(BROWSER_COOKIE, path="/api/authors/x/")
    return response


# --- Farcaster --------------------------------------------------------------------------------


class StrictFid(serializers.IntegerField):
    """A positive integer, as a JSON number or a string of digits (never a float or a bool)."""

    def to_internal_value(self, data: Any) -> int:
        if (
            isinstance(data, bool)
            or not isinstance(data, int | str)
            or (isinstance(data, str) and not data.isdigit())
        ):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class FarcasterLinkInput(serializers.Serializer):
    wallet_address = StrictText()
    wallet_message = StrictText(trim_whitespace=False)
    wallet_signature = StrictText()
    farcaster_message = StrictText(trim_whitespace=False, max_length=4096)
    farcaster_signature = StrictText()
    fid = StrictFid(min_value=1, max_value=2**63 - 1)
    username = StrictText(max_length=64)


class FarcasterLinkOutput(serializers.Serializer):
    username = serializers.CharField()
    fid = serializers.IntegerField()


class FarcasterLinkApi(_SmallJsonApi):
    @extend_schema(
        request=FarcasterLinkInput,
        responses={
            200: FarcasterLinkOutput,
            400: ErrorOutput,
            403: ErrorOutput,
            429: ErrorOutput,
            503: ErrorOutput,
        },
        summary="Link a Farcaster account to a wallet, proven by Sign In With Farcaster",
        description=(
            "`wallet_message` is exactly `Link Farcaster account for wallet: <checksummed address>` "
            "or the bound link message (`link_messages.farcaster` of `GET /api/authors/{wallet}/nonce`), "
            "signed by the wallet. The handle is pinned into token metadata when the message is the "
            "bound one or the fid's custody address is the wallet. `farcaster_message` is a Sign In "
            "With Farcaster (EIP-4361) "
            "message for the frontend's domain, unexpired, with the resource `farcaster://fid/<fid>`, "
            "signed by the fid's custody address (read from the IdRegistry on OP Mainnet); "
            "`username` must be the fid's current Farcaster name. Each message links once. The "
            "refusal's `detail` names the check that failed."
        ),
    )
    def post(self, request: Request) -> Response:
        checker = FarcasterChecker.from_settings()
        data = FarcasterLinkInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        wallet = wallet_checksummed(values["wallet_address"])
        form, nonce = _wallet_asked(
            wallet, values["wallet_message"], values["wallet_signature"], network=SocialLink.Network.FARCASTER
        )
        username = values["username"].strip().lstrip("@").lower()
        proof = checker.check(
            message=values["farcaster_message"],
            signature=values["farcaster_signature"],
            fid=values["fid"],
            username=username,
        )
        author_social_link(
            wallet=wallet,
            network=SocialLink.Network.FARCASTER,
            account_id=str(proof.fid),
            handle=username,
            proof=proof.as_record(),
            proof_digest=proof.digest,
            # The fid's custody address signed the Farcaster message: if that is the wallet, the
            # wallet itself proved the link, whatever form the wallet message had.
            wallet_proof=WalletProof.CUSTODY if proof.custody_address.lower() == wallet.lower() else form,
            nonce=nonce,
            client_address=client_address(request),
        )
        return Response({"username": username, "fid": proof.fid})
