"""The signed writes of an author's prompt: the nonce for a bound message, and the update itself
(signature, throttles, history)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authors.messages import (
    LINK_NETWORKS,
    BoundLink,
    BoundMessage,
    bound_link_message,
    bound_prompt_message,
    parse_bound_message,
    prompt_sha256,
    static_prompt_message,
)
from authors.models import PromptUpdate
from authors.services import PromptRefused, author_prompt_set, prompt_nonce_issue, prompt_nonce_usable
from chain.services.signatures import wallet_signature_verify_from_settings
from glisk.api import ErrorOutput
from glisk.config import PROMPT_MAX_LENGTH
from glisk.core.errors import ApplicationError
from glisk.public_api.throttles import PromptClientThrottle, PromptWalletThrottle, client_address
from glisk.public_api.views import WALLET_PARAMETER, wallet_checksummed


class PayloadTooLarge(ApplicationError):
    status_code = 413
    error_type = "payload_too_large"


class PromptNonceOutput(serializers.Serializer):
    nonce = serializers.CharField()
    chain_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    message_template = serializers.CharField(
        help_text="the bound message to sign, with {prompt_sha256} replaced by the hex SHA-256 "
        "of the UTF-8 prompt"
    )
    link_messages = serializers.DictField(
        child=serializers.CharField(),
        help_text="the bound link message to sign instead, by network (`x`, `farcaster`): the same "
        "nonce serves one prompt update or one link",
    )


class PromptNonceApi(APIView):
    throttle_classes = [PromptClientThrottle]

    @extend_schema(
        parameters=[WALLET_PARAMETER],
        responses={200: PromptNonceOutput, 400: ErrorOutput, 429: ErrorOutput},
        summary="A one-time nonce for a bound (replay-proof) prompt update or account link",
    )
    def get(self, request: Request, wallet: str) -> Response:
        checksummed = wallet_checksummed(wallet, "wallet")
        config = settings.GLISK
        issued = prompt_nonce_issue(wallet=checksummed, ttl_seconds=config.author_nonce_ttl_seconds)
        template = bound_prompt_message(
            wallet=checksummed,
            chain_id=config.chain_id,
            prompt_sha256="{prompt_sha256}",
            nonce=issued.nonce,
            expires_at=issued.expires_at,
        )
        return Response(
            {
                "nonce": issued.nonce,
                "chain_id": config.chain_id,
                "expires_at": issued.expires_at,
                "message_template": template,
                "link_messages": {
                    network: bound_link_message(
                        wallet=checksummed,
                        network=network,
                        chain_id=config.chain_id,
                        nonce=issued.nonce,
                        expires_at=issued.expires_at,
                    )
                    for network in LINK_NETWORKS
                },
            }
        )


class StrictText(serializers.CharField):
    """A JSON string, nothing coerced into one (a number is not a prompt)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class PromptInput(serializers.Serializer):
    wallet_address = StrictText()
    # As sent: a bound message's hash covers exactly these characters; the stored prompt is trimmed.
    prompt_text = StrictText(trim_whitespace=False, allow_blank=True)
    message = StrictText(trim_whitespace=False)
    signature = StrictText()


PROMPT_BODY_MAX = 64 * 1024


class PromptOutput(serializers.Serializer):
    success = serializers.BooleanField()
    has_prompt = serializers.BooleanField()


def bound_problem(bound: BoundMessage | BoundLink, *, wallet: str) -> str | None:
    """What a bound message (a prompt update's or a link's) gets wrong for `wallet` on this
    service: another wallet, another chain, or expired; None if nothing."""
    config = settings.GLISK
    if bound.wallet.lower() != wallet.lower():
        return "the message names another wallet"
    if bound.chain_id != config.chain_id:
        return f"the message is for chain {bound.chain_id}, this service runs chain {config.chain_id}"
    if bound.expires_at <= timezone.now():
        return "the message has expired: ask for a new nonce"
    return None


def _bound_problem(bound: BoundMessage, *, wallet: str, prompt_text: str) -> str | None:
    if bound.prompt_sha256 != prompt_sha256(prompt_text):
        return "the message's prompt hash does not match prompt_text"
    return bound_problem(bound, wallet=wallet)


class PromptUpdateApi(APIView):
    throttle_classes = [PromptClientThrottle]
    parser_classes = [JSONParser]
    verified_wallet: str | None = None
    verified_form: str = ""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        """`GET /api/authors/prompt` is the profile of a "wallet" named prompt: none, no prompt."""
        return Response({"has_prompt": False, "twitter_handle": None, "farcaster_handle": None})

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # DRF parses the stream itself, past Django's upload limit: refuse a large body unread.
        if int(request.META.get("CONTENT_LENGTH") or 0) > PROMPT_BODY_MAX:
            raise PayloadTooLarge(f"the body is larger than {PROMPT_BODY_MAX} bytes")
        super().initial(request, *args, **kwargs)

    @extend_schema(
        request=PromptInput,
        responses={
            200: PromptOutput,
            400: ErrorOutput,
            403: ErrorOutput,
            413: ErrorOutput,
            429: ErrorOutput,
            503: ErrorOutput,
        },
        summary="Set an author's prompt with a wallet signature (EOA, ERC-1271 or ERC-6492)",
        description=(
            "`message` is either exactly `Update GLISK prompt for wallet: <checksummed address>` "
            "(accepted while AUTHOR_ACCEPT_STATIC_MESSAGE is on) or the bound message from "
            "`GET /api/authors/{wallet}/nonce`, signed with `personal_sign`. The prompt is never "
            "echoed back."
        ),
        examples=[
            OpenApiExample(
                "static message",
                value={
                    "wallet_address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "prompt_text": "Neon koi fish swimming through a rainy Tokyo alley",
                    "message": "Update GLISK prompt for wallet: 0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "signature": "0x…65 bytes…",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = PromptInput(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = wallet_checksummed(data.validated_data["wallet_address"])
        sent: str = data.validated_data["prompt_text"]
        prompt = sent.strip()
        if not 1 <= len(prompt) <= PROMPT_MAX_LENGTH:
            raise PromptRefused(
                f"prompt_text must be 1 to {PROMPT_MAX_LENGTH} characters ({len(prompt)} given)"
            )
        message: str = data.validated_data["message"]
        form, nonce = self._form(message, wallet=wallet, prompt_text=sent)
        kind = wallet_signature_verify_from_settings(
            wallet=wallet, message=message, signature=data.validated_data["signature"]
        )
        if nonce and not prompt_nonce_usable(wallet=wallet, nonce=nonce):
            # Before the wallet's allowance is counted: a replayed signature must not use it up.
            raise PromptRefused("the nonce is unknown, expired or already used: ask for a new one")
        self.verified_wallet, self.verified_form = wallet, form
        throttle = PromptWalletThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait() or 0.0)
        author_prompt_set(
            wallet=wallet,
            prompt_text=prompt,
            form=form,
            signature_kind=kind,
            nonce=nonce,
            client_address=client_address(request),
        )
        return Response({"success": True, "has_prompt": True})

    def _form(self, message: str, *, wallet: str, prompt_text: str) -> tuple[str, str]:
        if message == static_prompt_message(wallet):
            if not settings.GLISK.author_accept_static_message:
                raise PromptRefused(
                    "the static message is not accepted here: sign the bound message from "
                    f"GET /api/authors/{wallet}/nonce"
                )
            return PromptUpdate.Form.STATIC, ""
        bound = parse_bound_message(message)
        if bound is None:
            raise PromptRefused(
                f"message must be exactly {static_prompt_message(wallet)!r} or a bound message"
            )
        problem = _bound_problem(bound, wallet=wallet, prompt_text=prompt_text)
        if problem:
            raise PromptRefused(problem)
        return PromptUpdate.Form.BOUND, bound.nonce
