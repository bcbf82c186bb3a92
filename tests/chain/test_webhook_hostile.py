"""Hostile input at the webhook: nothing unverified fills the database, big bodies are a clean 413,
old deliveries are pruned, and the back office never parses what it cannot trust."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chain.models import WebhookDelivery
from glisk.backoffice.selectors import dashboard_get
from tests.chain.helpers import post_delivery
from tests.factories import WebhookDeliveryFactory

pytestmark = pytest.mark.django_db

EMPTY_BLOCK = {"id": "whevt_1", "event": {"data": {"block": {"number": 1, "logs": []}}}}


def test_an_unsigned_body_is_kept_only_as_a_trace(client):
    body = json.dumps({"padding": "x" * 100_000}).encode()
    response = post_delivery(client, None, body=body, signature="ab" * 32)
    assert response.status_code == 401
    stored = WebhookDelivery.objects.get()
    assert stored.outcome == "rejected_signature" and stored.signature_valid is False
    assert len(bytes(stored.body)) == 4096 and stored.body_truncated
    assert stored.body_size == len(body) and stored.body_sha256 == hashlib.sha256(body).hexdigest()


def test_a_signed_body_is_kept_whole(client, chain):
    response = post_delivery(client, EMPTY_BLOCK)
    assert response.status_code == 200
    stored = WebhookDelivery.objects.get()
    assert bytes(stored.body) == json.dumps(EMPTY_BLOCK).encode() and not stored.body_truncated
    assert stored.outcome == "processed" and stored.signature_valid is True


def test_a_body_over_the_limit_is_413_and_stores_nothing(client, settings):
    body = b"{" + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b"}"
    response = post_delivery(client, None, body=body)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


def test_old_deliveries_are_pruned_by_outcome(capsys):
    now = timezone.now()
    ages = {"rejected_signature": [8, 2], "processed": [31, 5], "malformed": [40], "received": [90]}
    for outcome, days_list in ages.items():
        for days in days_list:
            row = WebhookDeliveryFactory.create(outcome=outcome)
            WebhookDelivery.objects.filter(pk=row.pk).update(received_at=now - timedelta(days=days))
    call_command("prune_webhooks", "--dry-run")
    assert "would delete 3 deliveries" in capsys.readouterr().out
    assert WebhookDelivery.objects.count() == 6
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    def delivered():
        text = Client().get("/metrics").content.decode()
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == "glisk_webhook_deliveries"]
        return {s.labels["outcome"]: s.value for s in family.samples if s.name.endswith("_total")}

    before = delivered()
    call_command("prune_webhooks")
    left = sorted(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert left == ["processed", "received", "rejected_signature"]  # received ones may need a replay
    # The counter Prometheus reads never goes down (a drop reads as a reset: alerts would fire).
    assert delivered() == before == {"rejected_signature": 2, "processed": 2, "malformed": 1, "received": 1}


def test_the_deliveries_list_loads_no_body_and_a_page_never_parses_an_unverified_one(admin_client):
    WebhookDeliveryFactory.create(
        outcome="processed", signature_valid=True, body=json.dumps(EMPTY_BLOCK).encode()
    )
    hostile = WebhookDeliveryFactory.create(
        outcome="rejected_signature",
        signature_valid=False,
        body=b"[" * 4096,
        body_size=10**6,
        body_truncated=True,
    )
    with CaptureQueriesContext(connection) as queries:
        listing = admin_client.get(reverse("admin:chain_webhookdelivery_changelist"))
    assert listing.status_code == 200
    selects = [q["sql"] for q in queries.captured_queries if 'FROM "chain_webhookdelivery"' in q["sql"]]
    assert selects and all('"chain_webhookdelivery"."body"' not in sql for sql in selects)
    page = admin_client.get(reverse("admin:chain_webhookdelivery_change", args=[hostile.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "[[[[[[[[" in text and "first 4096 of 1000000 bytes" in text


def test_the_dashboards_last_webhook_counts_only_verified_deliveries():
    verified = WebhookDeliveryFactory.create(outcome="processed", signature_valid=True)
    WebhookDelivery.objects.filter(pk=verified.pk).update(received_at=timezone.now() - timedelta(hours=3))
    WebhookDeliveryFactory.create(outcome="rejected_signature", signature_valid=False)
    board = dashboard_get(with_chain=False)
    assert board.last_webhook_at == WebhookDelivery.objects.get(pk=verified.pk).received_at


def test_an_unsigned_request_cannot_store_big_headers(client):
    headers = {f"HTTP_X_FILLER_{n}": "x" * 8000 for n in range(20)}
    response = client.post(
        "/webhooks/alchemy",
        data=b"{}",
        content_type="application/json",
        HTTP_X_ALCHEMY_SIGNATURE="ab" * 32,
        HTTP_USER_AGENT="u" * 5000,
        **headers,
    )
    assert response.status_code == 401
    stored = WebhookDelivery.objects.get().headers
    assert set(stored) <= {"X-Alchemy-Signature", "Content-Type", "Content-Length", "User-Agent"}
    assert len(stored["User-Agent"]) == 256


def test_pruning_reads_no_bodies_and_keeps_mint_events(capsys):
    from chain.models import MintEvent
    from tests.factories import MintEventFactory

    old = timezone.now() - timedelta(days=40)
    delivery = WebhookDeliveryFactory.create(outcome="processed", body=b"x" * 50_000)
    event = MintEventFactory.create(delivery=delivery)
    WebhookDelivery.objects.update(received_at=old)
    with CaptureQueriesContext(connection) as queries:
        call_command("prune_webhooks")
    assert not WebhookDelivery.objects.exists()
    assert MintEvent.objects.get(pk=event.pk).delivery_id is None
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert selects and all('"chain_webhookdelivery"."body"' not in sql for sql in selects)


def test_a_truncated_delivery_cannot_be_replayed_and_says_why(client):
    from chain.services.webhooks import WebhookRejected, webhook_delivery_replay

    post_delivery(client, None, body=json.dumps({"padding": "x" * 6000}).encode(), signature="ab" * 32)
    stored = WebhookDelivery.objects.get()
    with pytest.raises(WebhookRejected, match="only the first 4096 of its"):
        webhook_delivery_replay(delivery_id=stored.pk)


def test_a_later_source_fills_block_fields_only_for_the_same_block():
    from datetime import UTC, datetime

    from chain.logs import MintLog
    from chain.models import MintEvent
    from chain.services.ingestion import mint_logs_ingest

    log = MintLog(
        minter="0x" + "11" * 20,
        prompt_author="0x" + "22" * 20,
        start_token_id=1,
        quantity=1,
        total_paid_wei=1,
        tx_hash="0x" + "ab" * 32,
        log_index=0,
        block_number=100,
        block_hash="",
    )
    mint_logs_ingest(logs=[log], chain_id=31337, source="webhook")
    moved = dataclasses.replace(
        log, block_number=101, block_hash="0x" + "cd" * 32, block_timestamp=datetime(2026, 2, 2, tzinfo=UTC)
    )
    # Another block at the head (a webhook): never mixed into the stored one.
    mint_logs_ingest(logs=[moved], chain_id=31337, source="webhook")
    event = MintEvent.objects.get()
    assert (event.block_number, event.block_hash, event.block_timestamp) == (100, "", None)
    same = dataclasses.replace(moved, block_number=100)
    mint_logs_ingest(logs=[same], chain_id=31337, source="watcher")
    event.refresh_from_db()
    assert event.block_hash == "0x" + "cd" * 32 and event.block_timestamp == same.block_timestamp
    # The watcher, reading with confirmations, finds the transaction mined again in another block:
    # its whole copy (number, hash, time) replaces the stored one.
    remined = dataclasses.replace(
        log, block_number=107, block_hash="0x" + "ef" * 32, block_timestamp=datetime(2026, 2, 3, tzinfo=UTC)
    )
    mint_logs_ingest(logs=[remined], chain_id=31337, source="watcher")
    event.refresh_from_db()
    assert (event.block_number, event.block_hash, event.block_timestamp) == (
        107,
        remined.block_hash,
        remined.block_timestamp,
    )
