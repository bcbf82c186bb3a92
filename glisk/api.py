"""One error shape for every API response: `{"detail": …, "error": {"type": …, "message": …}}`
(`detail` is what the collection's web frontend shows; `error` says which kind of refusal).

Raw exception text never reaches a client: unexpected errors are logged and answered with a
generic 500 message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from glisk.core.errors import ApplicationError

logger = logging.getLogger(__name__)


class ErrorDetail(serializers.Serializer):
    """An error's machine-readable type and its message."""

    type = serializers.CharField()
    message = serializers.CharField()


class ErrorOutput(serializers.Serializer):
    """The shape of every error response."""

    detail = serializers.CharField()
    error = ErrorDetail()


class ApiError(ApplicationError):
    """A refusal raised by an API view itself (bad query, unknown resource)."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    error_type: str = "bad_request"

    def __init__(self, message: str, *, status_code: int | None = None, error_type: str | None = None):
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type


def error_response(
    status_code: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        {"detail": message, "error": {"type": error_type, "message": message}},
        status=status_code,
        headers=headers,
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, ApplicationError):
        return error_response(exc.status_code, exc.error_type, str(exc), exc.headers or None)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(413, "payload_too_large", f"the body is larger than {limit} bytes")
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is restarting or unreachable: nothing was accepted, and a sender that
        # retries (Alchemy does) will succeed once it is back. The driver's text stays in the log.
        logger.warning("api.database_unavailable", extra={"error_class": type(exc).__name__})
        return error_response(
            503, "database_unavailable", "the database is unavailable; retry shortly", {"Retry-After": "5"}
        )
    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = getattr(exc, "detail", None)
        message = detail if isinstance(detail, str) else _flatten(detail) if detail else str(exc)
        error_type = getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.APIException) and isinstance(exc.get_codes(), str):
            error_type = str(exc.get_codes())
        kept = {
            name: response.headers[name]
            for name in ("WWW-Authenticate", "Retry-After")
            if hasattr(response, "headers") and name in response.headers
        }
        return error_response(response.status_code, error_type, message, kept or None)
    logger.exception("api.unhandled_error", extra={"view": type(context.get("view")).__name__})
    return error_response(500, "server_error", "internal error; the operators have the details in the logs")


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(v) for v in detail)
    return str(detail)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 as JSON for API clients, Django's page for people in the admin."""
    if request.path.startswith("/admin/"):
        from django.views.defaults import page_not_found

        return page_not_found(request, exception or Exception())
    message = f"no such resource: {request.path[:200]}"
    return JsonResponse({"detail": message, "error": {"type": "not_found", "message": message}}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    message = "internal error; the operators have the details in the logs"
    return JsonResponse(
        {"detail": message, "error": {"type": "server_error", "message": message}}, status=500
    )


# The docs pages load only what the project serves: ReDoc's bundle would otherwise fetch web
# fonts and a logo from third-party hosts.
SELF_CONTAINED_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'"
)


def self_contained(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            # The documentation pages are read, nothing else: an OPTIONS made the Swagger view
            # render its metadata through an HTML renderer without a template (a 500).
            message = f"{request.method} is not allowed here: GET the page"
            refused = JsonResponse(
                {"detail": message, "error": {"type": "method_not_allowed", "message": message}}, status=405
            )
            refused["Allow"] = "GET, HEAD"
            return refused
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = SELF_CONTAINED_CSP
        return response

    return wrapped
