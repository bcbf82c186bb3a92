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


def test_alerting_series_stuck_oldest_queue_and_pending_reveals(client):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    TokenFactory.create(status="generating", status_changed_at=now - timedelta(hours=1))  # stuck
    old = TokenFactory.create(status="detected")
    TokenFactory.create(status="revealed", metadata_cid="bafk")
    from lifecycle.models import Token

    Token.objects.filter(pk=old.pk).update(created_at=now - timedelta(minutes=40))
    RevealTransactionFactory.create(status="sent", token_ids=[1])
    from chain.models import RevealTransaction

    RevealTransaction.objects.update(created_at=now - timedelta(minutes=12))
    from django_q.tasks import async_task

    for _ in range(2):
        async_task("math.floor", 1.5)  # two tasks waiting in the queue
    s = scrape(client)
    assert s[("glisk_tokens_stuck", (("stage", "generating"),))] == 1
    assert s[("glisk_tokens_stuck", (("stage", "detected"),))] == 0
    assert 40 * 60 - 5 < s[("glisk_oldest_unrevealed_age_seconds", ())] < 40 * 60 + 60
    assert s[("glisk_queue_depth", ())] == 2
    assert s[("glisk_reveal_transactions_pending", ())] == 1
    assert 12 * 60 - 5 < s[("glisk_reveal_pending_age_seconds", ())] < 12 * 60 + 60
    assert s[("glisk_clusters_running", ())] == 0  # no qcluster in this test


def test_histograms_count_each_finished_row_once(client):
    from datetime import timedelta

    from django.utils import timezone

    from chain.models import MintEvent
    from tests.factories import MintEventFactory

    now = timezone.now()
    token = TokenFactory.create()

    def job(seconds, finished_ago):
        ImageJob.objects.create(
            token=token,
            attempt=1,
            provider="local",
            prompt_text="p",
            outcome="succeeded",
            duration_ms=int(seconds * 1000),
            finished_at=now - finished_ago,
        )

    job(1.5, timedelta(minutes=5))
    job(40, timedelta(minutes=3))
    job(0.2, timedelta(seconds=5))  # too recent: counted by a later scrape
    mint = MintEventFactory.create()
    MintEvent.objects.filter(pk=mint.pk).update(block_timestamp=now - timedelta(minutes=10))
    TokenFactory.create(
        status="revealed",
        metadata_cid="bafk",
        mint_event=mint,
        revealed_at=now - timedelta(minutes=9, seconds=48),
    )

    def image(le=None):
        return (("le", le), ("stage", "image")) if le else (("stage", "image"),)

    for _ in range(2):  # a second scrape counts nothing twice
        s = scrape(client)
        assert s[("glisk_stage_call_seconds_bucket", image("1.0"))] == 0
        assert s[("glisk_stage_call_seconds_bucket", image("2.5"))] == 1
        assert s[("glisk_stage_call_seconds_bucket", image("60.0"))] == 2
        assert s[("glisk_stage_call_seconds_count", image())] == 2
        assert s[("glisk_stage_call_seconds_sum", image())] == 41.5
        assert s[("glisk_mint_to_reveal_seconds_bucket", (("le", "10.0"),))] == 0
        assert s[("glisk_mint_to_reveal_seconds_bucket", (("le", "15.0"),))] == 1
    # Once it has settled it is counted, once: the next scrapes do not count it again.
    from glisk.backoffice.histograms import histograms_advance

    histograms_advance(settle=timedelta(0))
    for _ in range(2):
        s = scrape(client)
        assert s[("glisk_stage_call_seconds_count", image())] == 3
        assert s[("glisk_stage_call_seconds_bucket", image("0.25"))] == 1


@pytest.mark.django_db(transaction=True)
def test_a_scrape_that_finds_the_histograms_being_advanced_serves_them_as_they_stand(client):
    """Concurrent scrapes never queue on the row lock (an open /metrics must not tie up workers)."""
    import threading

    from django.db import connection, transaction

    from glisk.core.models import SystemState

    scrape(client)  # creates the row
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with transaction.atomic():
            SystemState.objects.select_for_update().get(key="metrics.histograms")
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(10)
        s = scrape(client)  # answers at once, from the stored figures
        assert s[("glisk_stage_call_seconds_count", (("stage", "image"),))] == 0
    finally:
        release.set()
        holder.join()


def test_provider_budgets_and_the_backlog_at_the_limits(client, settings):
    """Each account's limit, use and 429s, and how long the backlog takes at the limits."""
    import dataclasses

    from glisk.core.budgets import PINATA, REPLICATE_CREATE, budget_acquire, budget_throttled

    settings.GLISK = dataclasses.replace(
        settings.GLISK,
        image_provider="replicate",
        ipfs_provider="pinata",
        replicate_creates_per_minute=600.0,
        pinata_requests_per_minute=180.0,
        worker_batch_size=50,
    )
    for _ in range(3):
        budget_acquire(name=REPLICATE_CREATE)
    budget_throttled(name=PINATA, seconds=30)
    for _ in range(20):
        TokenFactory.create(status="detected")
    for _ in range(10):
        TokenFactory.create(status="uploading")
    samples = scrape(client)
    assert (
        samples[
            ("glisk_provider_budget_limit_per_second", (("budget", "replicate.create"), ("unit", "requests")))
        ]
        == 10
    )
    assert samples[("glisk_provider_budget_admitted_total", (("budget", "replicate.create"),))] == 3
    assert samples[("glisk_provider_throttled_total", (("budget", "pinata"),))] == 1
    assert samples[("glisk_provider_throttled_seconds_total", (("budget", "pinata"),))] == 30
    assert 29 < samples[("glisk_provider_paused_seconds", (("budget", "pinata"),))] <= 30
    assert samples[("glisk_provider_budget_available", (("budget", "pinata"),))] == 0
    assert samples[("glisk_backlog_eta_seconds", (("stage", "image"),))] == 2.0  # 20 creates at 10/s
    # 30 pins in batches of 50, two uploads a batch at 3 a second.
    assert samples[("glisk_backlog_eta_seconds", (("stage", "ipfs"),))] == pytest.approx(30 / 75)


def test_the_dashboard_shows_the_provider_limits(admin_client):
    from glisk.core.budgets import PINATA, budget_throttled

    budget_throttled(name=PINATA, seconds=20)
    page = admin_client.get("/admin/").content.decode()
    assert 'id="provider-budgets"' in page
    assert "<td>pinata</td><td>3 requests/s, burst 10</td>" in page
    assert "s more</td>" in page and 'id="backlog-eta"' in page
