"""`POST /webhooks/alchemy`: thin; the work is in chain.services.webhooks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from chain.models import WebhookDelivery
from chain.services.webhooks import (
    SIGNATURE_HEADER,
    webhook_delivery_process,
    webhook_delivery_record,
    webhook_rejection_count,
    webhook_signature_valid,
)
from glisk.api import ErrorOutput
from glisk.core.clients import throttle_ident


class AlchemySignatureAuthentication(BaseAuthentication):
    """Verifies `X-Alchemy-Signature` over the raw body before anything parses it."""

    def authenticate(self, request: Request) -> tuple[None, str]:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise exceptions.NotAuthenticated(f"missing {SIGNATURE_HEADER} header")
        if not webhook_signature_valid(
            body=request.body, signature=signature, secret=settings.GLISK.alchemy_webhook_secret
        ):
            raise exceptions.AuthenticationFailed(f"{SIGNATURE_HEADER} does not match the body")
        return (None, "alchemy")

    def authenticate_header(self, request: Request) -> str:
        # Without this DRF would answer 403; a bad signature is a 401.
        return SIGNATURE_HEADER


class SignedByAlchemy(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth == "alchemy"


class AlchemySignatureScheme(OpenApiAuthenticationExtension):
    target_class = AlchemySignatureAuthentication
    name = "AlchemySignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": SIGNATURE_HEADER,
            "description": "lower-case hex HMAC-SHA256 of the raw body with the webhook signing key",
        }


class WebhookSummary(serializers.Serializer):
    status = serializers.CharField()
    delivery_id = serializers.IntegerField()
    mint_logs = serializers.IntegerField(required=False)
    ignored_logs = serializers.IntegerField(required=False)
    mint_events_new = serializers.IntegerField(required=False)
    mint_events_duplicate = serializers.IntegerField(required=False)
    tokens_new = serializers.IntegerField(required=False)
    tokens_existing = serializers.IntegerField(required=False)
    authors_new = serializers.IntegerField(required=False)
    new_token_range = serializers.ListField(child=serializers.IntegerField(), allow_null=True, required=False)
    capacity_error = serializers.CharField(required=False)


class RejectedDeliveryThrottle(SimpleRateThrottle):
    """Deliveries whose signature did not verify, per client address (signed ones never count)."""

    scope = "webhook_rejected"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": throttle_ident(self.get_ident(request))}


class AlchemyWebhookView(APIView):
    authentication_classes = [AlchemySignatureAuthentication]
    permission_classes = [SignedByAlchemy]
    parser_classes: list[Any] = []  # the body is read raw; the service parses it
    delivery: WebhookDelivery | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # The signature is checked over the raw bytes first (authentication); what is stored
        # depends on it: the whole body when it verifies, a trace when it does not.
        try:
            super().initial(request, *args, **kwargs)
        except (exceptions.NotAuthenticated, exceptions.AuthenticationFailed) as exc:
            # Unsigned traffic costs bounded storage whatever its rate: a client past its rate is
            # answered 429 and only counted; the rest keep a trace up to the hour's sample.
            throttle = RejectedDeliveryThrottle()
            if not throttle.allow_request(request, self):
                webhook_rejection_count()
                raise exceptions.Throttled(throttle.wait()) from exc
            webhook_delivery_record(
                body=request.body, meta=request.META, verified=False, error=str(exc.detail)
            )
            raise
        self.delivery = webhook_delivery_record(body=request.body, meta=request.META, verified=True)

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: WebhookSummary,
            400: ErrorOutput,
            401: ErrorOutput,
            413: ErrorOutput,
            429: ErrorOutput,
        },
        summary="Alchemy Custom (GraphQL) webhook: BatchMinted logs of the GliskNFT contract",
    )
    def post(self, request: Request) -> Response:
        assert self.delivery is not None
        summary = webhook_delivery_process(delivery=self.delivery)  # WebhookRejected answers 4xx
        return Response({"status": "ok", "delivery_id": self.delivery.pk, **summary})
