"""`POST /webhooks/alchemy`: thin; the work is in chain.services.webhooks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chain.models import WebhookDelivery
from chain.services.webhooks import (
    SIGNATURE_HEADER,
    WebhookRejected,
    webhook_delivery_process,
    webhook_delivery_record,
    webhook_delivery_reject,
    webhook_signature_valid,
)
from glisk.api import ApiError


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


class AlchemyWebhookView(APIView):
    authentication_classes = [AlchemySignatureAuthentication]
    permission_classes = [SignedByAlchemy]
    parser_classes: list[Any] = []  # the body is read raw; the service parses it
    delivery: WebhookDelivery | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Store the delivery before verifying it: rejected ones are kept for inspection too.
        self.delivery = webhook_delivery_record(body=request.body, meta=request.META)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        if self.delivery is not None and isinstance(
            exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed
        ):
            webhook_delivery_reject(
                delivery=self.delivery,
                outcome=WebhookDelivery.Outcome.REJECTED_SIGNATURE,
                error=str(exc.detail),
                signature_valid=False,
            )
        return super().handle_exception(exc)

    def post(self, request: Request) -> Response:
        assert self.delivery is not None
        WebhookDelivery.objects.filter(pk=self.delivery.pk).update(signature_valid=True)
        try:
            summary = webhook_delivery_process(delivery=self.delivery)
        except WebhookRejected as exc:
            raise ApiError(str(exc), status_code=exc.status_code, error_type="malformed_delivery") from None
        return Response({"status": "ok", "delivery_id": self.delivery.pk, **summary})
