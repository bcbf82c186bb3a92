from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from chain.views import AlchemyWebhookView
from glisk.api import self_contained
from glisk.backoffice.metrics import metrics
from glisk.health import health
from glisk.public_api import prompts, social
from glisk.public_api import views as public
from lifecycle.api.views import AuthorTokensApi, LeaderboardApi, TokenDetailApi
from lifecycle.views import ipfs_gateway

urlpatterns = [
    path("health", health, name="health"),
    path("favicon.ico", lambda request: HttpResponse(status=204)),  # browsers ask; nothing to show
    path("metrics", metrics, name="metrics"),
    path("webhooks/alchemy", AlchemyWebhookView.as_view(), name="alchemy-webhook"),
    # The web frontend's API (its contract; see glisk/public_api).
    path("api/authors/leaderboard", public.LeaderboardApi.as_view(), name="frontend-leaderboard"),
    path("api/authors/prompt", prompts.PromptUpdateApi.as_view(), name="frontend-prompt"),
    path("api/authors/x/auth/start", social.XAuthStartApi.as_view(), name="frontend-x-start"),
    path("api/authors/x/callback", social.x_callback, name="frontend-x-callback"),
    path("api/authors/farcaster/link", social.FarcasterLinkApi.as_view(), name="frontend-farcaster-link"),
    path("api/authors/<str:wallet>/nonce", prompts.PromptNonceApi.as_view(), name="frontend-prompt-nonce"),
    path("api/authors/<str:wallet>/tokens", public.AuthorTokensApi.as_view(), name="frontend-author-tokens"),
    path("api/authors/<str:wallet>", public.AuthorStatusApi.as_view(), name="frontend-author"),
    # The richer read API (paged, with CIDs, URIs and transactions).
    path("api/tokens/<int:token_id>", TokenDetailApi.as_view(), name="api-token"),
    path("api/tokens/by-author/<str:wallet>", AuthorTokensApi.as_view(), name="api-author-tokens"),
    path("api/stats/authors", LeaderboardApi.as_view(), name="api-leaderboard"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", self_contained(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc", self_contained(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    path("ipfs/<str:cid>", ipfs_gateway, name="ipfs-gateway"),
    path("admin/", admin.site.urls),
]

handler404 = "glisk.api.not_found"
handler500 = "glisk.api.server_error"
