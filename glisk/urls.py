from django.contrib import admin
from django.urls import path

from chain.views import AlchemyWebhookView
from glisk.health import health
from lifecycle.views import ipfs_gateway

urlpatterns = [
    path("health", health, name="health"),
    path("webhooks/alchemy", AlchemyWebhookView.as_view(), name="alchemy-webhook"),
    path("ipfs/<str:cid>", ipfs_gateway, name="ipfs-gateway"),
    path("admin/", admin.site.urls),
]
