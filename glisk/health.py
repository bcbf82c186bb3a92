"""`GET /health`: 200 when the database answers, 503 (with no driver text) when it does not."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from chain.services.guard import wrong_chain_problem

logger = logging.getLogger(__name__)


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # The driver's text can carry host names and credentials: log the class, answer generically.
        logger.warning("health.database_unreachable", extra={"error_type": type(exc).__name__})
        return JsonResponse(
            {
                "status": "unhealthy",
                "error": {"type": "DatabaseUnavailable", "message": "the database is not answering"},
            },
            status=503,
        )
    problem = wrong_chain_problem(with_chain_ids=False)  # public: the dashboard has the ids
    if problem:
        # The web app itself is fine (200), but the pipeline acts on nothing: say why.
        return JsonResponse({"status": "degraded", "problems": [problem]})
    return JsonResponse({"status": "healthy"})


class HealthCheckMiddleware:
    """`GET /health` answered first, before anything validates the Host header: a container's
    health check and a load balancer ask by address (127.0.0.1:8000, 10.0.0.7), which production's
    ALLOWED_HOSTS rightly does not list. Nothing here builds a URL from the host."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/health" and request.method == "GET":
            return health(request)
        return self.get_response(request)
