from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from glisk.core.models import SystemState
from lifecycle.models import ImageJob, IpfsRecord
from tests.factories import RevealTransactionFactory, TokenFactory, WebhookDeliveryFactory

pytestmark = pytest.mark.django_db


def scrape(client):
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_expose_every_series(client):
    revealed = TokenFactory.create(status="revealed", metadata_cid="bafk1")
    failed = TokenFactory.create(status="failed", failed_stage="uploading", last_error="x")
    TokenFactory.create(status="detected")
    ImageJob.objects.create(
        token=revealed, attempt=1, provider="local", prompt_text="p", outcome="succeeded", duration_ms=1500
    )
    ImageJob.objects.create(
        token=failed,
        attempt=1,
        provider="replicate",
        prompt_text="p",
        outcome="transient_error",
        error_class="http_429",
        duration_ms=500,
    )
    IpfsRecord.objects.create(
        token=failed,
        kind="image",
        attempt=1,
        provider="pinata",
        outcome="permanent_error",
        error_class="http_403",
        duration_ms=200,
    )
    WebhookDeliveryFactory.create(outcome="processed")
    WebhookDeliveryFactory.create(outcome="rejected_signature")
    RevealTransactionFactory.create(status="confirmed", token_ids=[revealed.pk], gas_used=120_000)
    SystemState.objects.create(key="watcher.cursor.31337.0xabc", value={"block": 90, "head": 100})

    s = scrape(client)
    assert s[("glisk_tokens", (("status", "revealed"),))] == 1
    assert s[("glisk_tokens", (("status", "detected"),))] == 1
    assert s[("glisk_tokens", (("status", "generating"),))] == 0
    assert (
        s[
            (
                "glisk_stage_attempts_total",
                (("error_class", "http_429"), ("outcome", "transient_error"), ("stage", "image")),
            )
        ]
        == 1
    )
    assert (
        s[
            (
                "glisk_stage_attempts_total",
                (("error_class", "http_403"), ("outcome", "permanent_error"), ("stage", "ipfs")),
            )
        ]
        == 1
    )
    assert s[("glisk_stage_duration_seconds_total", (("stage", "image"),))] == 2.0
    assert s[("glisk_stage_calls_finished_total", (("stage", "image"),))] == 2
    assert s[("glisk_tokens_failed_by_stage", (("stage", "uploading"),))] == 1
    assert s[("glisk_webhook_deliveries_total", (("outcome", "processed"),))] == 1
    assert s[("glisk_webhook_deliveries_total", (("outcome", "rejected_signature"),))] == 1
    assert s[("glisk_reveal_transactions_total", (("status", "confirmed"),))] == 1
    assert s[("glisk_reveal_gas_used_total", ())] == 120_000
    assert s[("glisk_reveal_tokens_total", ())] == 1
    assert s[("glisk_watcher_lag_blocks", (("cursor", "watcher.cursor.31337.0xabc"),))] == 10


def test_metrics_can_require_a_bearer_token(client, settings):
    import dataclasses

    RevealTransactionFactory.create(status="confirmed", token_ids=[1, 2, 3], gas_used=1)
    settings.GLISK = dataclasses.replace(settings.GLISK, metrics_token="scrape-me-please")
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert b"glisk_" not in refused.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-please")
    assert allowed.status_code == 200 and b"glisk_reveal_tokens_total 3.0" in allowed.content
