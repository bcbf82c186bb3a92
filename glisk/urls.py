from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from chain.views import AlchemyWebhookView
from glisk.api import self_contained
from glisk.backoffice.metrics import metrics
from glisk.health import health
from lifecycle.api.views import AuthorTokensApi, LeaderboardApi, TokenDetailApi
from lifecycle.views import ipfs_gateway

urlpatterns = [
    path("health", health, name="health"),
    path("favicon.ico", lambda request: HttpResponse(status=204)),  # browsers ask; nothing to show
    path("metrics", metrics, name="metrics"),
    path("webhooks/alchemy", AlchemyWebhookView.as_view(), name="alchemy-webhook"),
    path("api/tokens/<int:token_id>", TokenDetailApi.as_view(), name="api-token"),
    path("api/authors/leaderboard", LeaderboardApi.as_view(), name="api-leaderboard"),
    path("api/authors/<str:wallet>/tokens", AuthorTokensApi.as_view(), name="api-author-tokens"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", self_contained(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc", self_contained(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    path("ipfs/<str:cid>", ipfs_gateway, name="ipfs-gateway"),
    path("admin/", admin.site.urls),
]

handler404 = "glisk.api.not_found"
handler500 = "glisk.api.server_error"
