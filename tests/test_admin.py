"""Smoke tests: every registered model's changelist and change page render for an operator."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.factories import MintEventFactory, RevealTransactionFactory, TokenFactory, WebhookDeliveryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def some_rows():
    event = MintEventFactory.create()
    token = TokenFactory.create(author=event.author, mint_event=event)
    WebhookDeliveryFactory.create()
    RevealTransactionFactory.create()
    return token


def registered_models():
    return list(admin.site._registry)


@pytest.mark.parametrize("model", registered_models(), ids=lambda m: m._meta.label)
def test_every_changelist_renders(admin_client, some_rows, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    response = admin_client.get(url, {"q": "1"})
    assert response.status_code == 200


def test_token_page_renders_its_history(admin_client, some_rows):
    from lifecycle.services.tokens import token_transition

    token_transition(token_id=some_rows.pk, to="generating", actor="stage:image", reason="claimed")
    response = admin_client.get(reverse("admin:lifecycle_token_change", args=[some_rows.pk]))
    assert response.status_code == 200
    assert b"stage:image" in response.content


def test_machine_written_rows_cannot_be_added_by_hand(admin_client):
    for name in ("lifecycle_token", "chain_mintevent", "chain_webhookdelivery", "chain_revealtransaction"):
        assert admin_client.get(reverse(f"admin:{name}_add")).status_code == 403
