"""Throttling is the provider account's state, never the token's fault: a 429 counts no attempt,
pauses the account's shared budget for the time the provider named, and no worker claims a
token while its provider has no budget."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from glisk.core.budgets import (
    PINATA,
    REPLICATE_CREATE,
    REPLICATE_READ,
    budget_available,
    budget_reset,
    budget_throttled,
)
from glisk.core.models import ProviderBudget
from lifecycle.models import ImageJob, IpfsRecord, Token
from lifecycle.providers.errors import throttle_seconds
from lifecycle.services.stages import image_stage_run, ipfs_stage_run
from tests.factories import TokenFactory
from tests.lifecycle.conftest import configure

pytestmark = pytest.mark.django_db


def uploading(**kwargs):
    token = TokenFactory.create(status="uploading", image_content_type="image/png", **kwargs)
    token.image.save(f"{token.pk}.png", ContentFile(b"\x89PNG\r\n\x1a\n" + os.urandom(300)), save=True)
    return token


def pin(pinner):
    return ipfs_stage_run(worker_id="w-ipfs", budget_seconds=1, pinner_=pinner)


def generate(provider):
    return image_stage_run(worker_id="w-image", budget_seconds=1, provider=provider)


@pytest.mark.parametrize(
    ("headers", "body", "seconds"),
    [
        ({"Retry-After": "3"}, None, 3.0),
        ({"ratelimit-reset": "12"}, {"detail": "x"}, 12.0),
        ({"X-RateLimit-Reset": "7"}, None, 7.0),
        ({}, {"retry_after": 4}, 4.0),
        ({}, {"detail": "Request was throttled. Your rate limit resets in ~30s."}, 30.0),
        ({}, {"detail": "Request was throttled. Expected available in 1 second."}, 1.0),
        ({}, {"error": {"reason": "RATE_LIMITED", "details": "resets in 2 minutes"}}, 120.0),
        ({}, {"error": {"reason": "RATE_LIMITED", "details": "Too many requests"}}, None),
        ({"Retry-After": "nonsense"}, "plain text", None),
    ],
)
def test_the_wait_a_provider_names_is_read_from_any_of_its_forms(headers, body, seconds):
    assert throttle_seconds(headers, body) == seconds


def test_a_pinata_429_counts_no_attempt_and_pauses_the_account(pinata, pinata_pinner, settings):
    configure(settings, ipfs_max_attempts=1)
    pinata.inject("429")  # x-ratelimit-reset: 1
    token = uploading()
    before = timezone.now()
    report = pin(pinata_pinner)
    assert (report.throttled, report.retried, report.failed) == (1, 0, 0)
    token.refresh_from_db()
    assert token.status == "uploading" and token.ipfs_attempts == 0 and token.claimed_by == ""
    assert "throttled" in token.last_error and "counts no attempt" in token.last_error
    assert 0.9 <= (token.next_attempt_at - before).total_seconds() <= 2
    budget = ProviderBudget.objects.get(name=PINATA)
    assert budget.throttled == 1 and budget.paused_until > before
    assert IpfsRecord.objects.get(token=token).error_class == "http_429"


def test_a_token_throttled_more_often_than_its_attempt_cap_still_goes_through(
    pinata, pinata_pinner, settings
):
    configure(settings, ipfs_max_attempts=1)
    pinata.inject("429", "429", "429")
    token = uploading()
    for _ in range(3):
        token.refresh_from_db()
        Token.objects.filter(pk=token.pk).update(next_attempt_at=timezone.now())
        budget_reset(name=PINATA)  # the announced second has passed
        assert pin(pinata_pinner).throttled == 1
    Token.objects.filter(pk=token.pk).update(next_attempt_at=timezone.now())
    budget_reset(name=PINATA)
    assert pin(pinata_pinner).succeeded == 1
    token.refresh_from_db()
    assert token.status == "ready" and token.ipfs_attempts == 1


def test_a_throttled_token_is_never_claimed_while_its_provider_has_no_budget(pinata, pinata_pinner):
    token = uploading()
    budget_throttled(name=PINATA, seconds=60)
    assert budget_available(name=PINATA) == 0
    report = pin(pinata_pinner)
    assert report.claimed == 0 and "no provider budget" in report.details
    token.refresh_from_db()
    assert token.claimed_by == "" and token.lease_expires_at is None and token.status == "uploading"
    assert pinata.requests == []


def test_a_batch_is_only_as_large_as_the_create_budget(replicate, replicate_provider, settings):
    """Replicate's creates are rationed: a worker claims as many tokens as there are creates in
    the account's budget now, and leaves the rest for when the budget refills."""
    configure(settings, replicate_creates_per_minute=6.0, replicate_create_burst=3.0, worker_batch_size=10)
    for _ in range(5):
        TokenFactory.create()
    report = image_stage_run(worker_id="w-image", budget_seconds=0.5, provider=replicate_provider)
    assert report.claimed == 3 and report.succeeded == 3
    assert replicate.creates == 3
    assert Token.objects.filter(status="detected", claimed_by="").count() == 2


def test_a_replicate_429_on_create_counts_no_attempt(replicate, replicate_provider):
    replicate.limit("create", 6, 1)
    replicate.limits["create"].take()  # the account's burst is spent elsewhere
    token = TokenFactory.create()
    assert generate(replicate_provider).throttled == 1
    token.refresh_from_db()
    assert token.status == "generating" and token.image_attempts == 0
    assert "resets in ~10s" in token.last_error
    assert 9 <= (token.next_attempt_at - timezone.now()).total_seconds() <= 11
    assert ProviderBudget.objects.get(name=REPLICATE_CREATE).throttled == 1
    assert replicate.predictions == {}


def test_a_prediction_whose_read_was_throttled_is_resumed_not_bought_again(replicate, replicate_provider):
    replicate.run_seconds = (1.5, 1.5)  # outlives the create's one-second wait: it must be read
    replicate.limit("read", 0.001, 1)
    replicate.limits["read"].take()  # no read left
    token = TokenFactory.create()
    assert generate(replicate_provider).throttled == 1
    token.refresh_from_db()
    assert token.status == "generating" and token.image_attempts == 0
    job = ImageJob.objects.get(token=token)
    assert job.external_id in replicate.predictions and job.error_class == "http_429"
    assert ProviderBudget.objects.get(name=REPLICATE_READ).paused_until is not None

    replicate.limit("read", None)
    budget_reset(name=REPLICATE_READ)
    Token.objects.filter(pk=token.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert generate(replicate_provider).succeeded == 1
    assert replicate.creates == 1  # the throttled prediction was read again, not bought again
    token.refresh_from_db()
    assert token.status == "uploading" and token.image_attempts == 1
    assert ImageJob.objects.filter(token=token, outcome="succeeded").get().external_id == job.external_id


def test_pinata_batches_gather_before_they_go_up(pinata, pinata_pinner, settings):
    """One upload a batch: a lone due token waits up to IPFS_BATCH_WAIT_SECONDS for others, and
    a full batch goes at once."""
    configure(settings, ipfs_batch_wait_seconds=30.0, worker_batch_size=3)
    lone = uploading()
    report = pin(pinata_pinner)  # a one-second task: the lone token is left to gather
    assert report.claimed == 0 and pinata.requests == []
    Token.objects.filter(pk=lone.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=31))
    assert pin(pinata_pinner).succeeded == 1  # it waited long enough: it goes alone
    others = [uploading() for _ in range(3)]
    assert pin(pinata_pinner).succeeded == 3  # a full batch: at once, in two requests
    assert len(pinata.requests) == 4
    assert {t.status for t in Token.objects.filter(pk__in=[t.pk for t in others])} == {"ready"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Request was throttled. Your rate limit resets in 500 milliseconds.", 0.5),
        ("resets in 250ms", 0.25),
        ("resets in 3 hours", 10_800.0),
        ("resets in 2 mins", 120.0),
        ("Expected available in 7 seconds", 7.0),
        ("resets in 10 msec", 0.01),  # found in review: read as 10 s
        ("resets in 1h30m", 3600.0),  # found in review: not read at all; the hour is enough
    ],
)
def test_every_unit_of_a_reset_text_is_read(text, seconds):
    assert throttle_seconds({}, {"detail": text}) == seconds


def test_a_reset_header_given_as_a_unix_time_is_read_as_the_time_left():
    import time

    waited = throttle_seconds({"x-ratelimit-reset": str(int(time.time()) + 6)})
    assert waited is not None and 4 <= waited <= 6


def test_a_carry_on_between_batches_does_not_wait_for_a_batch_to_gather(pinata, pinata_pinner, settings):
    import time

    configure(settings, ipfs_batch_wait_seconds=30.0)
    uploading()
    started = time.monotonic()
    report = ipfs_stage_run(
        worker_id="w-ipfs", budget_seconds=5, pinner_=pinata_pinner, wait_for_backoff=False
    )
    assert report.succeeded == 1 and time.monotonic() - started < 2


def test_dates_and_millisecond_times_are_read_as_the_time_left():
    """Found in review: an HTTP-date `Retry-After`, a reset in milliseconds since the epoch, a
    `retry_after` given as a Unix time and a reset text under `error.message` were misread."""
    import email.utils
    import time

    now = time.time()
    forms = [
        ({"Retry-After": email.utils.formatdate(now + 30, usegmt=True)}, None, 30),
        ({"x-ratelimit-reset": str(int((now + 20) * 1000))}, None, 20),
        ({}, {"retry_after": now + 15}, 15),
        ({}, {"error": {"message": "Rate limit exceeded, resets in 5s"}}, 5),
    ]
    for headers, body, expected in forms:
        waited = throttle_seconds(headers, body)
        assert waited is not None and expected - 2 <= waited <= expected, (headers, body, waited)
