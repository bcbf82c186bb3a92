"""The read API: tokens, an author's tokens, the authors' leaderboard. Thin views over selectors."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from eth_utils import is_address
from rest_framework import generics, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authors.models import Author
from authors.selectors import author_get_by_wallet, authors_with_token_counts
from glisk.api import ApiError, ErrorOutput
from glisk.core.recent import Recent
from lifecycle.display import ipfs_http_url
from lifecycle.models import Token, TokenStatus

# ASCII digits, at most 18 (what a PostgreSQL bigint OFFSET holds; the schema says so too).
_PLAIN_NUMBER = re.compile(r"[0-9]{1,18}")
PAGING_MAX = 10**18 - 1


class Pagination(LimitOffsetPagination):
    """limit/offset paging that refuses malformed values instead of silently ignoring them."""

    default_limit = 50
    max_limit = 500

    def _strict(self, request: Request, name: str, minimum: int) -> None:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise ApiError(f"{name} given more than once", error_type="invalid_query")
        # str.isdigit() also takes "²" and "¹", which int() refuses, and a 5,000-digit number is
        # past what int() converts (both were a 500).
        if values and (not _PLAIN_NUMBER.fullmatch(values[0]) or int(values[0]) < minimum):
            raise ApiError(f"{name} must be an integer >= {minimum}", error_type="invalid_query")

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.limit_query_param:
                param["schema"].update(minimum=1, maximum=PAGING_MAX)
            elif param["name"] == self.offset_query_param:
                param["schema"].update(minimum=0, maximum=PAGING_MAX)
        return params

    def get_limit(self, request: Request) -> int | None:
        self._strict(request, self.limit_query_param, 1)
        return super().get_limit(request)

    def get_offset(self, request: Request) -> int:
        self._strict(request, self.offset_query_param, 0)
        return super().get_offset(request)


class TokenOutput(serializers.Serializer):
    token_id = serializers.IntegerField()
    status = serializers.CharField()
    author = serializers.CharField(source="author.wallet_address")
    image_cid = serializers.CharField(allow_blank=True)
    image_url = serializers.SerializerMethodField()
    metadata_cid = serializers.CharField(allow_blank=True)
    metadata_url = serializers.SerializerMethodField()
    token_uri = serializers.SerializerMethodField()
    reveal_tx = serializers.SerializerMethodField()
    mint_tx = serializers.SerializerMethodField()
    revealed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_image_url(self, obj: Token) -> str | None:
        return ipfs_http_url(obj.image_cid)

    def get_metadata_url(self, obj: Token) -> str | None:
        return ipfs_http_url(obj.metadata_cid)

    def get_token_uri(self, obj: Token) -> str | None:
        return f"ipfs://{obj.metadata_cid}" if obj.metadata_cid else None

    def get_reveal_tx(self, obj: Token) -> str | None:
        tx = obj.reveal_transaction
        return tx.tx_hash if tx is not None and obj.status == TokenStatus.REVEALED else None

    def get_mint_tx(self, obj: Token) -> str | None:
        return obj.mint_event.tx_hash if obj.mint_event is not None else None


class LeaderboardEntry(serializers.Serializer):
    wallet_address = serializers.CharField()
    tokens = serializers.IntegerField(source="tokens_total")
    revealed = serializers.IntegerField(source="tokens_revealed")
    twitter_handle = serializers.CharField(allow_blank=True)
    farcaster_handle = serializers.CharField(allow_blank=True)


def tokens_qs() -> QuerySet[Token]:
    return Token.objects.select_related("author", "reveal_transaction", "mint_event")


class TokenDetailApi(APIView):
    @extend_schema(responses={200: TokenOutput, 404: ErrorOutput}, summary="A token by its on-chain id")
    def get(self, request: Request, token_id: int) -> Response:
        token = tokens_qs().filter(pk=token_id).first()
        if token is None:
            raise ApiError(f"token #{token_id} is not known", status_code=404, error_type="not_found")
        return Response(TokenOutput(token).data)


@extend_schema(
    responses={200: TokenOutput(many=True), 400: ErrorOutput, 404: ErrorOutput},
    parameters=[
        OpenApiParameter(
            "wallet",
            str,
            OpenApiParameter.PATH,
            pattern="^0x[0-9a-fA-F]{40}$",
            description="the author's wallet (any letter case)",
        ),
    ],
    summary="Tokens of an author, newest first",
)
class AuthorTokensApi(generics.ListAPIView):
    serializer_class = TokenOutput
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Token]:
        wallet = str(self.kwargs["wallet"])
        if not is_address(wallet):
            raise ApiError("wallet must be a 0x-prefixed 20-byte address", error_type="invalid_wallet")
        author = author_get_by_wallet(wallet=wallet)
        if author is None:
            raise ApiError(f"no author {wallet}", status_code=404, error_type="not_found")
        return tokens_qs().filter(author=author).order_by("-token_id")


@extend_schema(
    responses={200: LeaderboardEntry(many=True), 400: ErrorOutput},
    summary="Authors by number of tokens minted with their prompt",
)
class LeaderboardApi(generics.ListAPIView):
    serializer_class = LeaderboardEntry
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Author]:
        return authors_with_token_counts(with_tokens_only=True)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every page is cut from one ranking kept per worker for LEADERBOARD_CACHE_SECONDS: it
        counts every token, so no client (nor one asking for every offset) can make the database
        count them on every request."""

        def rank() -> list[Any]:
            return list(LeaderboardEntry(self.get_queryset(), many=True).data)

        ranking = RANKINGS.get_or_compute("authors", settings.GLISK.leaderboard_cache_seconds, rank)
        page = self.paginate_queryset(ranking)
        return self.get_paginated_response(page)


RANKINGS: Recent[str, list[Any]] = Recent(max_entries=10)
