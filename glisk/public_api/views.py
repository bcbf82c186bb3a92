"""Thin views over authors', lifecycle's and chain's services and selectors (see the package):
the public reads (leaderboard, an author's tokens and status); `prompts` has the signed writes."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from eth_utils import is_address, to_checksum_address
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authors.selectors import author_get_by_wallet, authors_with_token_counts
from glisk.api import ApiError, ErrorOutput
from glisk.core.recent import Recent
from lifecycle.display import ipfs_http_url
from lifecycle.models import STAGE_STATUSES, TokenStatus
from lifecycle.selectors import PageToken, author_token_page

LEADERBOARD_SIZE = 50
WALLET_PARAMETER = OpenApiParameter(
    "wallet",
    str,
    OpenApiParameter.PATH,
    pattern="^0x[0-9a-fA-F]{40}$",
    description="the wallet address (any letter case)",
)
ANY_WALLET_PARAMETER = OpenApiParameter(
    "wallet", str, OpenApiParameter.PATH, description="a wallet address; anything else has no prompt"
)


def wallet_checksummed(wallet: object, name: str = "wallet_address") -> str:
    checksummed = _checksum(wallet) if isinstance(wallet, str) and len(wallet) <= 42 else None
    if checksummed is None:
        raise ApiError(f"{name} must be a 0x-prefixed 20-byte address", error_type="invalid_wallet")
    return checksummed


@functools.lru_cache(maxsize=4096)
def _checksum(wallet: str) -> str | None:
    """The EIP-55 form of `wallet` (in any letter case), or None if it is no address.
    Remembered: a watched author's wallet comes back every 2 s per watcher, and the Keccak hash
    of a checksum cost more than the rest of a token list's parsing."""
    return str(to_checksum_address(wallet)) if is_address(wallet) else None


# --- the leaderboard ---------------------------------------------------------------------------


class AuthorRank(serializers.Serializer):
    author_address = serializers.CharField(source="wallet_address")
    total_tokens = serializers.IntegerField(source="tokens_total")


LEADERBOARDS: Recent[str, Any] = Recent(max_entries=10)


class LeaderboardApi(APIView):
    @extend_schema(
        responses={200: AuthorRank(many=True)},
        summary="The 50 authors with the most tokens (every status counts), then by address",
        examples=[
            OpenApiExample(
                "two authors",
                value=[
                    {"author_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "total_tokens": 12},
                    {"author_address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "total_tokens": 3},
                ],
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        def count() -> Any:
            top = authors_with_token_counts(with_tokens_only=True)[:LEADERBOARD_SIZE]
            return AuthorRank(top, many=True).data

        # It counts every token: kept per worker for LEADERBOARD_CACHE_SECONDS, so no client can
        # make the database count them on every request.
        return Response(
            LEADERBOARDS.get_or_compute("frontend", settings.GLISK.leaderboard_cache_seconds, count)
        )


# --- an author's tokens ------------------------------------------------------------------------


# The schema's description of what `frontend_token` renders (a test holds the two to the same
# fields); a comment, not a docstring, which would be published in the API's documentation.
class FrontendToken(serializers.Serializer):
    token_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TokenStatus.choices)
    image_cid = serializers.CharField(allow_null=True, read_only=True)
    metadata_cid = serializers.CharField(allow_null=True, read_only=True)
    image_url = serializers.CharField(allow_null=True, read_only=True, help_text="a URL a browser can load")
    generation_attempts = serializers.IntegerField()
    generation_error = serializers.CharField(
        allow_null=True,
        read_only=True,
        help_text="the image stage's last error while the token is in it or failed there",
    )
    reveal_tx_hash = serializers.CharField(allow_null=True, read_only=True, help_text="set once revealed")
    created_at = serializers.DateTimeField()


IMAGE_STAGE = frozenset(STAGE_STATUSES["image"])


def frontend_token(token: PageToken, *, site: str) -> dict[str, Any]:
    """A FrontendToken, rendered by hand rather than by the serializer: this list is what every
    collector watching a reveal polls, and DRF's per-field machinery was most of its cost.
    `site` (scheme and host) makes a local gateway path a full URL, since the frontend is on
    another origin."""
    status = token.status
    url = ipfs_http_url(token.image_cid)
    failed_there = status == TokenStatus.FAILED and token.failed_stage in IMAGE_STAGE
    return {
        "token_id": token.token_id,
        "status": status,
        "image_cid": token.image_cid or None,
        "metadata_cid": token.metadata_cid or None,
        "image_url": site + url if url and url.startswith("/") else url,
        "generation_attempts": token.image_attempts,
        "generation_error": (token.last_error or None) if status in IMAGE_STAGE or failed_there else None,
        "reveal_tx_hash": token.reveal_tx_hash if status == TokenStatus.REVEALED else None,
        "created_at": iso_datetime(token.created_at),
    }


def iso_datetime(value: datetime) -> str:
    """As DRF writes every other date of the API: ISO 8601 in UTC, `Z` for the offset."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class AuthorTokensPage(serializers.Serializer):
    tokens = FrontendToken(many=True)
    total = serializers.IntegerField()
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()


PAGE_OFFSET_MAX, PAGE_LIMIT_MAX = 10**9, 100


class PageQuery(serializers.Serializer):
    offset = serializers.IntegerField(min_value=0, max_value=PAGE_OFFSET_MAX, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=PAGE_LIMIT_MAX, default=20)


PLAIN_NUMBER = re.compile(r"[0-9]{1,10}")
# Token lists answered in the last TOKEN_LIST_CACHE_SECONDS, by wallet, offset and limit: each
# collector watching a reveal polls its author's list every 2 s, so a popular author's watchers
# cost this worker one query and one rendering per period instead of one per poll. What is kept
# is the answer's JSON cut where the site (scheme and host) goes into image URLs, so that every
# host name the site answers to shares one entry. At most 500 answers of at most 100 tokens
# (about 50 MB at worst, with 500-character errors on every token) per worker.
TOKEN_PAGES: Recent[tuple[str, int, int], list[bytes]] = Recent(max_entries=500)
JSON = JSONRenderer()
# Stands for the site while an answer is rendered: an image URL starts with it. JSON writes it
# as the escape below, a string that starts with an escaped NUL, which no stored text can give
# (PostgreSQL's text holds no NUL, and text that spells "\u0000" out is written "\\u0000"; a
# quote inside a string is written \", so an unescaped one always opens or closes a string).
SITE_MARK, SITE_MARK_IN_JSON = "\x00", b'"\\u0000'


def _plain_page_query(params: QueryDict) -> tuple[int, int] | None:
    """`offset` and `limit` when they are plain numbers in range (or absent), what the frontend
    sends on every poll; None when they need PageQuery's validation and messages."""
    offset, limit = params.get("offset", "0"), params.get("limit", "20")
    if PLAIN_NUMBER.fullmatch(offset) and PLAIN_NUMBER.fullmatch(limit):
        values = int(offset), int(limit)
        if values[0] <= PAGE_OFFSET_MAX and 1 <= values[1] <= PAGE_LIMIT_MAX:
            return values
    return None


def _page_query(params: QueryDict) -> tuple[int, int]:
    """`offset` and `limit`, validated (plain numbers in range are read directly)."""
    plain = _plain_page_query(params)
    if plain is not None:
        return plain
    for name in ("offset", "limit"):
        value = params.get(name)
        if value is not None and not value.strip():
            raise ApiError(f"{name} must be an integer", error_type="invalid_query")
    query = PageQuery(data=params)
    query.is_valid(raise_exception=True)
    return query.validated_data["offset"], query.validated_data["limit"]


class AuthorTokensApi(APIView):
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """A poll, a GET with plain paging values (or none) for JSON, is answered without DRF's
        request wrapping, negotiation and response rendering, which cost more than the rest of a
        remembered answer; anything else (HEAD, OPTIONS, other media types, values to validate,
        errors) goes through DRF like every other view. Both give the same bytes."""
        if (
            request.method == "GET"
            and _json_accepted(request.headers.get("Accept"))
            and "format" not in request.GET
        ):
            paging = _plain_page_query(request.GET)
            checksummed = _checksum(kwargs["wallet"]) if len(kwargs["wallet"]) <= 42 else None
            if paging is not None and checksummed is not None:
                try:
                    body = _token_list(request, checksummed, *paging)
                except (OperationalError, InterfaceError) as exc:
                    # The database is away: answered by DRF's exception handling (503 with
                    # Retry-After, like every API view) without reading the page a second time.
                    self.args, self.kwargs = args, kwargs
                    self.request = drf_request = self.initialize_request(request, *args, **kwargs)
                    self.headers = self.default_response_headers
                    return self.finalize_response(drf_request, self.handle_exception(exc), *args, **kwargs)
                response = HttpResponse(body, content_type="application/json")
                response.headers["Allow"] = ", ".join(self.allowed_methods)  # as DRF sets it
                return response
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        parameters=[WALLET_PARAMETER, PageQuery],
        responses={200: AuthorTokensPage, 400: ErrorOutput},
        summary="An author's tokens, newest first (an unknown wallet has none)",
    )
    def get(self, request: Request, wallet: str) -> HttpResponse:
        checksummed = wallet_checksummed(wallet, "wallet")
        offset, limit = _page_query(request.query_params)
        return HttpResponse(_token_list(request, checksummed, offset, limit), content_type="application/json")


def _json_accepted(accept: str | None) -> bool:
    """Whether DRF would surely answer this Accept with its plain JSON: no header, or media ranges
    without parameters (no q=0, no indent) of which one is */* or application/json. Anything
    else is left to DRF's negotiation."""
    if accept is None:
        return True
    ranges = [media.strip().lower() for media in accept.split(",")]
    return all(";" not in media for media in ranges) and ("*/*" in ranges or "application/json" in ranges)


def _token_list(request: HttpRequest, wallet: str, offset: int, limit: int) -> bytes:
    """The JSON of one page of an author's token list, as recently answered or read now."""
    parts = TOKEN_PAGES.get_or_compute(
        (wallet, offset, limit),
        settings.GLISK.token_list_cache_seconds,
        functools.partial(_token_list_parts, wallet=wallet, offset=offset, limit=limit),
    )
    # Image URLs are full (another origin reads them); the host is one Django validated.
    return f'"{request.scheme}://{request.get_host()}'.encode().join(parts)


def _token_list_parts(*, wallet: str, offset: int, limit: int) -> list[bytes]:
    page = author_token_page(wallet=wallet, offset=offset, limit=limit)
    tokens = [frontend_token(token, site=SITE_MARK) for token in page.tokens]
    body = JSON.render({"tokens": tokens, "total": page.total, "offset": offset, "limit": limit})
    return body.split(SITE_MARK_IN_JSON)


# --- an author's profile -----------------------------------------------------------------------


class AuthorStatus(serializers.Serializer):
    has_prompt = serializers.BooleanField()
    twitter_handle = serializers.CharField(allow_null=True)
    farcaster_handle = serializers.CharField(allow_null=True)


class AuthorStatusApi(APIView):
    @extend_schema(
        parameters=[ANY_WALLET_PARAMETER],
        responses={200: AuthorStatus},
        summary="Whether an author has a prompt, and their linked handles (never the prompt itself)",
    )
    def get(self, request: Request, wallet: str) -> Response:
        author = author_get_by_wallet(wallet=wallet) if is_address(wallet) else None
        return Response(
            {
                "has_prompt": bool(author is not None and author.prompt_text),
                "twitter_handle": (author.twitter_handle or None) if author else None,
                "farcaster_handle": (author.farcaster_handle or None) if author else None,
            }
        )


# --- signed prompt updates ---------------------------------------------------------------------
