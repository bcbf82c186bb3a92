from django.contrib import admin
from django.urls import path

from chain.views import AlchemyWebhookView
from glisk.health import health

urlpatterns = [
    path("health", health, name="health"),
    path("webhooks/alchemy", AlchemyWebhookView.as_view(), name="alchemy-webhook"),
    path("admin/", admin.site.urls),
]
