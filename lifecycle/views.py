"""`GET /ipfs/<cid>`: the local IPFS store, so `ipfs://` links resolve on the devnet."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from lifecycle.providers.ipfs import LocalPinner


@require_GET
def ipfs_gateway(request: HttpRequest, cid: str) -> HttpResponse:
    found = LocalPinner(settings.IPFS_LOCAL_DIR).read(cid)
    if found is None:
        return JsonResponse(
            {"error": {"type": "not_found", "message": "no such CID in the local store"}}, status=404
        )
    data, content_type = found
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "public, max-age=31536000, immutable"  # content-addressed: never changes
    response["X-Content-Type-Options"] = "nosniff"
    return response
