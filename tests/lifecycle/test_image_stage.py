from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
from django.core.files.storage import FileSystemStorage
from django.utils import timezone
from django_q.models import OrmQ

from glisk.core.models import ProviderBudget
from lifecycle.models import ImageJob, Token, TokenTransition
from lifecycle.providers.images import LocalImageProvider, sniff_content_type
from lifecycle.services.stages import image_stage_run, prompt_for
from lifecycle.services.tokens import token_claim, token_retry
from tests.factories import AuthorFactory, TokenFactory
from tests.lifecycle.conftest import configure

pytestmark = pytest.mark.django_db


def run(provider=None):
    return image_stage_run(worker_id="w-test", budget_seconds=1, provider=provider)


def test_local_provider_generates_stores_and_moves_to_uploading(settings):
    token = TokenFactory.create(author=AuthorFactory.create(prompt_text="a red fox in snow"))
    report = run(LocalImageProvider())
    assert (report.claimed, report.succeeded) == (1, 1)
    token.refresh_from_db()
    assert token.status == "uploading" and token.claimed_by == ""
    assert token.prompt_text == "a red fox in snow" and not token.fallback_prompt_used
    assert token.image_content_type == "image/png"
    with token.image.open("rb") as handle:
        assert sniff_content_type(handle.read()) == "image/png"
    job = ImageJob.objects.get(token=token)
    assert (job.outcome, job.provider, job.attempt) == ("succeeded", "local", 1)
    assert job.duration_ms is not None and job.image_bytes > 0
    assert list(TokenTransition.objects.filter(token=token).values_list("to_status", flat=True)) == [
        "generating",
        "uploading",
    ]
    assert any("ipfs_stage" in str(q.task["func"]) for q in OrmQ.objects.all())


def test_local_images_are_deterministic_and_distinct():
    provider = LocalImageProvider()
    a = provider.generate(prompt="p", token_id=1).data
    assert a == provider.generate(prompt="p", token_id=1).data
    assert a != provider.generate(prompt="p", token_id=2).data
    assert a != provider.generate(prompt="q", token_id=1).data


def test_prompt_falls_back_to_default_author_then_default_prompt(settings):
    silent = AuthorFactory.create(prompt_text=None)
    token = TokenFactory.create(author=silent)
    assert prompt_for(token) == settings.GLISK.default_prompt
    AuthorFactory.create(wallet_address=settings.GLISK.default_author_wallet, prompt_text="house style")
    assert prompt_for(token) == "house style"


def test_replicate_success_over_http(replicate, replicate_provider):
    token = TokenFactory.create()
    assert run(replicate_provider).succeeded == 1
    token.refresh_from_db()
    assert token.status == "uploading" and token.image_content_type == "image/webp"
    job = ImageJob.objects.get(token=token)
    assert job.external_id in replicate.predictions
    create = next(r for r in replicate.requests if r["method"] == "POST")
    assert create["path"] == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert create["headers"]["Authorization"] == f"Bearer {replicate.token}"
    # Answered when the prediction is done: it is never read, only its output downloaded.
    assert create["headers"]["Prefer"] == f"wait={replicate_provider.prefer_wait}"
    assert not [r for r in replicate.requests if r["method"] == "GET" and r["path"].startswith("/v1/")]
    with token.image.open("rb") as handle:
        assert handle.read() == replicate.files[job.external_id]


def test_the_prediction_id_is_stored_while_the_model_still_runs(replicate, replicate_provider):
    """A prediction that outlives the create's wait: its id reaches `started` (which commits it
    on the attempt row) before it is read, so a worker killed from then on leaves it behind."""
    assert replicate_provider.prefer_wait == 1
    replicate.run_seconds = (1.6, 1.6)
    seen: list[tuple[str, str]] = []

    def started(prediction_id: str) -> None:
        seen.append((prediction_id, replicate.predictions[prediction_id]["status"]))

    image = replicate_provider.generate(prompt="a slow garden", token_id=1, started=started)
    assert seen == [(image.external_id, "processing")]
    assert replicate.creates == 1
    polls = [r for r in replicate.requests if r["path"] == f"/v1/predictions/{image.external_id}"]
    assert len(polls) >= 1 and image.data == replicate.files[image.external_id]


def test_replicate_prediction_that_must_be_polled(replicate, replicate_provider):
    replicate.inject("starting")
    token = TokenFactory.create()
    assert run(replicate_provider).succeeded == 1
    assert Token.objects.get(pk=token.pk).status == "uploading"
    assert sum(1 for r in replicate.requests if r["path"].startswith("/v1/predictions/")) >= 2


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ("500", "http_500"),
        ("503", "http_503"),
        ("slow", "timeout"),
        ("model_error", "model_error"),
    ],
)
def test_transient_errors_back_off_and_keep_the_token(replicate, replicate_provider, fault, error_class):
    replicate.inject(fault)
    token = TokenFactory.create()
    before = timezone.now()
    report = run(replicate_provider)
    assert report.retried == 1 and report.failed == 0
    token.refresh_from_db()
    assert token.status == "generating" and token.image_attempts == 1 and token.claimed_by == ""
    assert token.next_attempt_at > before
    assert token.last_error_detail["error_class"] == error_class
    job = ImageJob.objects.get(token=token)
    assert job.outcome == "transient_error" and job.error_class == error_class


def test_connection_refused_is_transient(replicate, replicate_provider):
    replicate.stop()
    token = TokenFactory.create()
    assert run(replicate_provider).retried == 1
    token.refresh_from_db()
    assert token.last_error_detail["error_class"] in ("connection", "timeout")


def test_vanished_output_is_transient(replicate, replicate_provider):
    replicate.files_gone = True
    token = TokenFactory.create()
    assert run(replicate_provider).retried == 1
    assert Token.objects.get(pk=token.pk).last_error_detail["error_class"] == "download_404"


def test_an_output_that_is_no_image_is_transient_and_bought_again(replicate, replicate_provider):
    """Found in review: an error page served with 200 under a 70-character Content-Type was kept
    as the image, and its type did not fit the attempt row."""
    replicate.files_garbled = True
    token = TokenFactory.create()
    assert run(replicate_provider).retried == 1
    token.refresh_from_db()
    assert token.status == "generating" and token.last_error_detail["error_class"] == "not_an_image"
    assert "was not a PNG, JPEG, GIF or WebP image" in token.last_error
    replicate.files_garbled = False
    token.next_attempt_at = timezone.now()
    token.save(update_fields=["next_attempt_at"])
    assert run(replicate_provider).succeeded == 1
    token.refresh_from_db()
    assert token.status == "uploading" and token.image_content_type == "image/webp"
    assert replicate.creates == 2  # the bad output's prediction is not polled again


@pytest.mark.parametrize("fault", ["401", "422"])
def test_permanent_errors_fail_the_token_with_a_readable_reason(replicate, replicate_provider, fault):
    replicate.inject(fault)
    token = TokenFactory.create()
    assert run(replicate_provider).failed == 1
    token.refresh_from_db()
    assert token.status == "failed" and token.failed_stage == "generating"
    assert f"Replicate answered {fault}" in token.last_error
    assert ImageJob.objects.get(token=token).outcome == "permanent_error"


def test_wrong_token_is_permanent(replicate, replicate_provider, settings):
    replicate.token = "r8_rotated"
    token = TokenFactory.create()
    run(replicate_provider)
    assert Token.objects.get(pk=token.pk).status == "failed"


def test_nsfw_retries_once_with_the_fallback_prompt(replicate, replicate_provider, settings):
    author = AuthorFactory.create(prompt_text="something explicit")
    replicate.nsfw_prompts.add("something explicit")
    token = TokenFactory.create(author=author)
    assert run(replicate_provider).succeeded == 1
    token.refresh_from_db()
    assert token.status == "uploading" and token.fallback_prompt_used
    assert token.prompt_text == settings.GLISK.fallback_censored_prompt
    assert replicate.prompts == ["something explicit", settings.GLISK.fallback_censored_prompt]
    jobs = list(ImageJob.objects.filter(token=token).values_list("outcome", "fallback"))
    assert jobs == [("content_policy", False), ("succeeded", True)]


def test_nsfw_fallback_refused_too_fails_the_token(replicate, replicate_provider, settings):
    replicate.inject("nsfw", "nsfw")
    token = TokenFactory.create()
    assert run(replicate_provider).failed == 1
    token.refresh_from_db()
    assert token.status == "failed" and "fallback prompt was refused too" in token.last_error
    assert token.fallback_prompt_used


def test_retry_cap_ends_in_failed_then_operator_retry_succeeds(
    replicate, replicate_provider, settings, fast_retries
):
    configure(settings, image_max_attempts=2)
    replicate.inject("500", "503")
    token = TokenFactory.create()
    report = run(replicate_provider)
    assert (report.retried, report.failed) == (1, 1)
    token.refresh_from_db()
    assert token.status == "failed" and "gave up after 2 attempts" in token.last_error
    assert token.image_attempts == 2

    assert token_retry(token_id=token.pk, actor="operator:ops") == "generating"
    assert run(replicate_provider).succeeded == 1
    assert Token.objects.get(pk=token.pk).status == "uploading"


def test_second_run_does_no_external_work_for_finished_tokens(replicate, replicate_provider):
    TokenFactory.create_batch(3)
    assert run(replicate_provider).succeeded == 3
    creates = replicate.creates
    assert run(replicate_provider).claimed == 0
    assert replicate.creates == creates == 3


def test_a_dead_workers_lease_expires_and_the_token_is_picked_up(replicate_provider):
    token = TokenFactory.create()
    claim = token_claim(statuses=["detected"], worker_id="killed-worker", limit=1, lease_seconds=1)
    assert claim.ids == [token.pk]
    assert run(replicate_provider).claimed == 0  # leased to the dead worker
    Token.objects.filter(pk=token.pk).update(lease_expires_at=timezone.now())  # time passes
    assert run(replicate_provider).succeeded == 1
    assert Token.objects.get(pk=token.pk).status == "uploading"


def test_a_generation_whose_worker_died_before_handing_on_is_reused_not_paid_twice(
    replicate, replicate_provider
):
    token = TokenFactory.create()
    # The first worker generated and stored the image, then was killed before its transition.
    claim = token_claim(statuses=["detected"], worker_id="doomed", limit=1, lease_seconds=60)
    from lifecycle.services.stages import StageReport, image, image_generate_token

    call = image._generation(
        claim.tokens[0], provider=replicate_provider, prompt="p", attempt=1, fallback=False, resumable=None
    )
    stored = image._generate([call], worker_id="doomed", concurrency=1)[token.pk]
    Token.objects.filter(pk=token.pk).update(
        status="generating",
        prompt_text="p",
        status_changed_at=timezone.now() - timedelta(seconds=5),
        lease_expires_at=timezone.now(),
    )
    ImageJob.objects.filter(token=token).update(created_at=timezone.now())
    assert replicate.creates == 1
    report = StageReport()
    fresh = Token.objects.select_related("author").get(pk=token.pk)
    token_claim(statuses=["generating"], worker_id="w2", limit=1, lease_seconds=60)
    image_generate_token(token=fresh, worker_id="w2", provider=replicate_provider, report=report)
    assert report.succeeded == 1 and replicate.creates == 1
    token.refresh_from_db()
    assert token.status == "uploading" and token.image.name == stored.path


def test_regenerate_does_not_reuse_the_previous_image(replicate, replicate_provider):
    from lifecycle.services.operator import operator_regenerate

    token = TokenFactory.create()
    assert run(replicate_provider).succeeded == 1
    Token.objects.filter(pk=token.pk).update(status="ready", metadata_cid="bafkx")
    operator_regenerate(token_id=token.pk, operator="ops", reason="ugly")
    assert run(replicate_provider).succeeded == 1
    assert replicate.creates == 2
    assert ImageJob.objects.filter(token=token, outcome="succeeded").count() == 2


def test_a_token_backing_off_is_retried_in_the_same_run_not_a_minute_later(
    replicate, replicate_provider, settings
):
    configure(settings, retry_backoff_base_seconds=0.3, retry_backoff_max_seconds=0.3)
    replicate.inject("503")
    token = TokenFactory.create()
    started = timezone.now()
    report = image_stage_run(worker_id="w", budget_seconds=10, provider=replicate_provider)
    assert (report.retried, report.succeeded) == (1, 1)
    token.refresh_from_db()
    assert token.status == "uploading" and (timezone.now() - started).total_seconds() < 5


@pytest.mark.django_db(transaction=True)
def test_a_claimed_batch_is_generated_concurrently(replicate, replicate_provider, settings):
    """Provider calls wait on the network: threads (each with its own connection) overlap them."""
    configure(settings, stage_concurrency=8, worker_batch_size=8)
    replicate.latency = (0.3, 0.3)
    TokenFactory.create_batch(8)
    report = image_stage_run(worker_id="w", budget_seconds=5, provider=replicate_provider)
    assert report.succeeded == 8 and replicate.creates == 8
    assert set(Token.objects.values_list("status", flat=True)) == {"uploading"}
    assert replicate.max_in_flight > 1  # the batch's predictions overlapped


@pytest.mark.django_db(transaction=True)
def test_the_local_generator_is_not_threaded(settings):
    """CPU-bound: threads would only add connections and contention."""
    import threading

    configure(settings, stage_concurrency=8, worker_batch_size=8)
    seen: set[str] = set()

    class Recording(LocalImageProvider):
        def generate(self, *, prompt, token_id, **kwargs):
            seen.add(threading.current_thread().name)
            return super().generate(prompt=prompt, token_id=token_id, **kwargs)

    TokenFactory.create_batch(4)
    assert image_stage_run(worker_id="w", budget_seconds=5, provider=Recording()).succeeded == 4
    assert seen == {threading.current_thread().name}


@pytest.mark.parametrize("fault", ["429_retry_after_inf", "429_retry_after_huge"])
def test_an_absurd_retry_after_is_capped_at_the_throttle_wait(replicate, replicate_provider, settings, fault):
    configure(settings, throttle_wait_max_seconds=90.0)
    replicate.inject(fault)
    token = TokenFactory.create()
    before = timezone.now()
    report = run(replicate_provider)
    assert report.throttled == 1  # no attempt counted, no crash, no loop
    token.refresh_from_db()
    waited = (token.next_attempt_at - before).total_seconds()
    assert 89 <= waited <= 91  # asked for forever, capped at THROTTLE_WAIT_MAX_SECONDS
    assert token.image_attempts == 0 and token.last_error_detail["retry_after"] <= 86_400
    paused = ProviderBudget.objects.get(name="replicate.create").paused_until
    assert 89 <= (paused - before).total_seconds() <= 91  # the whole account waits as long


class FullDisk:
    """A storage that fails as a full disk does, after the provider has been paid."""

    def __init__(self, **_):
        pass

    def save(self, name, content, max_length=None):
        raise OSError(28, "No space left on device at https://bucket.example/images?X-Amz-Credential=secret")

    def exists(self, name):
        return False


def test_an_unexpected_error_after_a_paid_generation_is_an_attempt_and_ends_failed(
    replicate, replicate_provider, settings, fast_retries
):
    configure(settings, image_max_attempts=3)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.FullDisk"}}
    token = TokenFactory.create()
    report = run(replicate_provider)
    assert report.failed == 1
    token.refresh_from_db()
    assert token.status == "failed" and token.image_attempts == 3
    # The token's error (public as generation_error) names the class; the attempt rows keep the
    # message for operators, without URLs.
    assert "unexpected OSError" in token.last_error and "No space left" not in token.last_error
    errors = list(ImageJob.objects.filter(token=token).values_list("error", flat=True))
    assert all("No space left" in e and "<url>" in e and "secret" not in e for e in errors)
    assert replicate.creates == 3  # paid once per attempt, not again at every lease expiry
    jobs = list(ImageJob.objects.filter(token=token).values_list("outcome", "error_class"))
    assert jobs == [("transient_error", "unexpected_OSError")] * 3


def test_a_generation_whose_worker_died_while_it_ran_is_resumed_not_bought_again(
    replicate, replicate_provider
):
    token = TokenFactory.create()
    claim = token_claim(statuses=["detected"], worker_id="doomed", limit=1, lease_seconds=60)
    from lifecycle.services.stages import image

    # The first worker starts a generation; the model is still running when the worker dies.
    replicate.inject("starting")
    died = RuntimeError("SIGKILL")

    def start_then_die(external_id):
        ImageJob.objects.filter(token=token).update(external_id=external_id)
        raise died

    Token.objects.filter(pk=token.pk).update(
        status="generating", prompt_text="p", status_changed_at=timezone.now() - timedelta(seconds=5)
    )
    job = ImageJob.objects.create(token=token, attempt=1, provider="replicate", prompt_text="p")
    with pytest.raises(RuntimeError, match="SIGKILL"):
        replicate_provider.generate(prompt="p", token_id=token.pk, started=start_then_die)
    job.refresh_from_db()
    assert job.external_id and job.outcome == "started" and replicate.creates == 1
    assert claim.tokens

    # Its lease runs out; another worker takes the token over and polls the same prediction.
    Token.objects.filter(pk=token.pk).update(lease_expires_at=timezone.now())
    fresh = Token.objects.select_related("author").get(pk=token.pk)
    token_claim(statuses=["generating"], worker_id="w2", limit=1, lease_seconds=60)
    from lifecycle.services.stages import StageReport

    report = StageReport()
    image.image_generate_token(token=fresh, worker_id="w2", provider=replicate_provider, report=report)
    assert report.succeeded == 1 and replicate.creates == 1  # resumed, not bought again
    job.refresh_from_db()
    assert job.outcome == "succeeded" and job.image_path
    assert ImageJob.objects.filter(token=token).count() == 1
    assert Token.objects.get(pk=token.pk).status == "uploading"


def test_an_unreadable_poll_after_a_paid_generation_counts_one_attempt_and_reads_it_again(
    replicate, replicate_provider
):
    """The poll answers a body that is no JSON: a transient `bad_response`, counted. The
    prediction was paid for and its id is on the row, so the next attempt reads it again
    instead of buying another."""
    replicate.inject("garbage_poll")
    token = TokenFactory.create()
    report = run(replicate_provider)
    assert report.retried == 1 and replicate.creates == 1
    (job,) = ImageJob.objects.filter(token=token)
    assert job.outcome == "transient_error" and job.error_class == "bad_response" and job.external_id
    Token.objects.filter(pk=token.pk).update(next_attempt_at=timezone.now())
    assert run(replicate_provider).succeeded == 1
    assert replicate.creates == 1
    assert ImageJob.objects.get(token=token).outcome == "succeeded"  # the same row, taken over


def _dead_worker_left_a_row_without_an_id(token):
    """A worker wrote its attempt row and died before the prediction's id reached it."""
    Token.objects.filter(pk=token.pk).update(
        status="generating", prompt_text="p", status_changed_at=timezone.now() - timedelta(seconds=5)
    )
    job = ImageJob.objects.create(token=token, attempt=1, provider="replicate", prompt_text="p")
    assert token_claim(statuses=["generating"], worker_id="w2", limit=1, lease_seconds=60).tokens
    return job


def _create_directly(replicate, prompt, seed):
    import requests

    response = requests.post(
        f"{replicate.url}/v1/models/black-forest-labs/flux-schnell/predictions",
        json={"input": {"prompt": prompt, "seed": seed}},
        headers={"Authorization": f"Bearer {replicate.token}"},
        timeout=5,
    )
    assert response.status_code == 201
    return response.json()["id"]


def test_a_prediction_created_by_a_worker_that_died_before_storing_its_id_is_found_by_seed(
    replicate, replicate_provider
):
    from lifecycle.services.stages import StageReport, image

    token = TokenFactory.create()
    job = _dead_worker_left_a_row_without_an_id(token)
    replicate.page_size = 2  # the search pages through the account's predictions
    _create_directly(replicate, "p", 1)  # the same prompt (another token of the author), other seed
    lost = _create_directly(replicate, "p", image.generation_seed(job))  # the dead worker's request
    for n in range(3):
        _create_directly(replicate, f"later {n}", 7)
    fresh = Token.objects.select_related("author").get(pk=token.pk)
    report = StageReport()
    image.image_generate_token(token=fresh, worker_id="w2", provider=replicate_provider, report=report)
    assert report.succeeded == 1 and replicate.creates == 5  # found, not bought again
    job.refresh_from_db()
    assert job.external_id == lost and job.outcome == "succeeded"
    assert any(r["path"] == "/v1/predictions?cursor=2" for r in replicate.requests)


@pytest.mark.parametrize("hiccup", ["500", "garbage"])
def test_a_search_that_fails_is_tried_again_before_anything_is_bought(
    replicate, replicate_provider, fast_retries, hiccup
):
    """The search for a dead worker's prediction fails (or answers a page the client cannot read;
    the client itself retries 429s): the attempt is a transient `search_failed`, nothing is
    bought, and the next attempt searches again and finds the prediction."""
    from lifecycle.services.stages import StageReport, image

    token = TokenFactory.create()
    job = _dead_worker_left_a_row_without_an_id(token)
    lost = _create_directly(replicate, "p", image.generation_seed(job))
    replicate.list_faults = [hiccup]
    report = StageReport()
    fresh = Token.objects.select_related("author").get(pk=token.pk)
    image.image_generate_token(token=fresh, worker_id="w2", provider=replicate_provider, report=report)
    job.refresh_from_db()
    assert report.retried == 1 and replicate.creates == 1  # only the dead worker's
    assert (job.outcome, job.error_class, job.external_id) == ("transient_error", "search_failed", "")
    Token.objects.filter(pk=token.pk).update(next_attempt_at=timezone.now())
    assert image_stage_run(worker_id="w3", budget_seconds=1, provider=replicate_provider).succeeded == 1
    assert replicate.creates == 1
    assert list(ImageJob.objects.filter(token=token).values_list("outcome", "external_id")) == [
        ("succeeded", lost)
    ]


def test_a_create_that_timed_out_on_our_side_is_found_not_bought_again(
    replicate, replicate_provider, fast_retries
):
    """The POST times out here but Replicate created (and bills) the prediction: the next attempt
    finds it by the row's seed."""
    import time

    replicate.slow_seconds = 2.5  # past the provider's 2 s timeout; the stand-in creates it after
    replicate.inject("slow")
    token = TokenFactory.create()
    assert image_stage_run(worker_id="w1", budget_seconds=1, provider=replicate_provider).retried == 1
    job = ImageJob.objects.get(token=token)
    assert (job.error_class, job.external_id) == ("timeout", "")
    time.sleep(1.0)  # the stand-in finishes creating what the client gave up on
    Token.objects.filter(pk=token.pk).update(next_attempt_at=timezone.now())
    assert image_stage_run(worker_id="w1", budget_seconds=1, provider=replicate_provider).succeeded == 1
    assert replicate.creates == 1 and len(replicate.predictions) == 1
    job.refresh_from_db()
    assert job.outcome == "succeeded" and job.external_id == next(iter(replicate.predictions))


def test_a_worker_that_died_before_asking_leaves_nothing_to_find_and_one_new_prediction_is_made(
    replicate, replicate_provider
):
    import json

    from lifecycle.services.stages import StageReport, image

    token = TokenFactory.create()
    job = _dead_worker_left_a_row_without_an_id(token)
    _create_directly(replicate, "p", 1)
    fresh = Token.objects.select_related("author").get(pk=token.pk)
    report = StageReport()
    image.image_generate_token(token=fresh, worker_id="w2", provider=replicate_provider, report=report)
    assert report.succeeded == 1 and replicate.creates == 2
    created = json.loads([r for r in replicate.requests if r["method"] == "POST"][-1]["body"])
    assert created["input"]["seed"] == image.generation_seed(job)
    assert ImageJob.objects.get(token=token).outcome == "succeeded"


def test_a_prediction_replicate_no_longer_has_is_started_again(replicate, replicate_provider):
    token = TokenFactory.create(status="generating", prompt_text="p")
    Token.objects.filter(pk=token.pk).update(status_changed_at=timezone.now() - timedelta(seconds=5))
    ImageJob.objects.create(
        token=token, attempt=1, provider="replicate", prompt_text="p", external_id="0" * 20
    )
    assert run(replicate_provider).succeeded == 1
    assert replicate.creates == 1  # the stored id was unknown (404): one new prediction
    assert ImageJob.objects.get(token=token).outcome == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_slow_batch_keeps_its_short_lease_by_heartbeat(settings):
    """The lease is 3 s, the generation takes 5 s: without renewal another worker would take the
    token over and pay for it again."""
    import threading
    import time

    from django.db import connections

    configure(settings, stage_lease_seconds=3)
    calls = []

    class SlowModel(LocalImageProvider):
        def generate(self, **kwargs):
            calls.append(kwargs["token_id"])
            time.sleep(5.0)
            return super().generate(**kwargs)

    token = TokenFactory.create()
    outcome = {}

    def worker():
        try:
            outcome["report"] = image_stage_run(worker_id="slow", budget_seconds=10, provider=SlowModel())
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(4.0)  # past the lease it was claimed with
    stolen = token_claim(statuses=["detected", "generating"], worker_id="thief", limit=5, lease_seconds=30)
    thread.join(20)
    assert stolen.tokens == []
    assert outcome["report"].succeeded == 1 and calls == [token.pk]
    assert Token.objects.get(pk=token.pk).status == "uploading"


def test_a_worker_that_lost_its_lease_does_not_pay_again(replicate, replicate_provider):
    from lifecycle.services.stages import StageReport, image_generate_token

    token = TokenFactory.create(status="generating", prompt_text="p")
    token_claim(statuses=["generating"], worker_id="w1", limit=1, lease_seconds=60)
    Token.objects.filter(pk=token.pk).update(lease_expires_at=timezone.now())  # w1 stalled
    token_claim(statuses=["generating"], worker_id="w2", limit=1, lease_seconds=60)
    report = StageReport()
    stale = Token.objects.select_related("author").get(pk=token.pk)
    image_generate_token(token=stale, worker_id="w1", provider=replicate_provider, report=report)
    assert report.lost == 1 and replicate.creates == 0
    assert not ImageJob.objects.exists()


def test_a_stage_task_makes_way_for_a_waiting_reveal_between_batches(settings):
    """With every worker busy on stages, the keeper's queued task would wait; a stage task hands
    its worker back after a batch and queues its own continuation."""
    import time

    from glisk.core.models import SystemState
    from glisk.core.stages import stage_nudge, stage_started

    configure(settings, worker_batch_size=5)
    TokenFactory.create_batch(12)
    stage_nudge(stage="reveal")  # a reveal is due and its task is queued, not started
    # Queued a moment ago: a free worker would take it, so the stage goes on.
    assert image_stage_run(worker_id="w", budget_seconds=30, provider=LocalImageProvider()).claimed == 12
    Token.objects.update(status="detected", image_attempts=0)
    # Queued 3 s ago and still not started: no worker was free for it.
    SystemState.objects.filter(key="nudge.reveal").update(value={"queued_until": time.time() + 12})
    first = image_stage_run(worker_id="w", budget_seconds=30, provider=LocalImageProvider())
    assert first.claimed == 5 and "yielded to reveal" in first.details
    queued = {task.func() for task in OrmQ.objects.all()}
    assert queued == {"chain.tasks.reveal_stage", "lifecycle.tasks.image_stage", "lifecycle.tasks.ipfs_stage"}
    stage_started(stage="reveal")  # the keeper's task got the worker
    rest = image_stage_run(worker_id="w", budget_seconds=30, provider=LocalImageProvider())
    assert rest.claimed == 7 and rest.details == []
    assert Token.objects.filter(status="uploading").count() == 12


def test_a_transient_error_without_retry_after_backs_off_briefly(settings):
    from lifecycle.services.stages import backoff_seconds

    configure(settings, retry_backoff_base_seconds=2.0, retry_backoff_max_seconds=300.0)
    assert all(backoff_seconds(1) <= 2.0 for _ in range(20))
    assert backoff_seconds(1, retry_after=7.0) == 7.0
    assert backoff_seconds(1, retry_after=float("inf")) == 300.0


def test_a_prediction_that_outlived_our_deadline_is_polled_not_bought_again(replicate, fast_retries):
    from lifecycle.providers.replicate import ReplicateImageProvider

    slow_poller = ReplicateImageProvider(
        api_token=replicate.token,
        base_url=replicate.url,
        model="black-forest-labs/flux-schnell",
        timeout=1.0,
        poll_interval=1.5,
    )
    replicate.inject("starting")  # the model needs two polls; our deadline passes after one
    token = TokenFactory.create()
    report = image_stage_run(worker_id="w", budget_seconds=15, provider=slow_poller)
    assert report.succeeded == 1 and replicate.creates == 1
    (job,) = ImageJob.objects.filter(token=token)
    assert job.outcome == "succeeded" and job.external_id in replicate.predictions


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_reconnects_after_its_connection_is_dropped(settings):
    import time

    from django.db import connection

    from lifecycle.services.stages.runner import lease_heartbeat

    token = TokenFactory.create()
    token_claim(statuses=["detected"], worker_id="w", limit=1, lease_seconds=3)
    with lease_heartbeat(worker_id="w", lease_seconds=3):
        time.sleep(1.3)  # one beat, and its connection sits idle
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() AND state = 'idle'"
            )
        time.sleep(4.0)  # past the lease: only renewals after the drop keep it
        expires = Token.objects.get(pk=token.pk).lease_expires_at
    assert expires > timezone.now()


def test_the_image_task_carries_what_it_generated_through_the_ipfs_stage():
    """Fewer hops: the worker that generated a batch pins it at once, without waiting for the
    queued IPFS task to reach a worker."""
    from lifecycle.tasks import image_stage

    tokens = TokenFactory.create_batch(2)
    result = image_stage()
    assert (result["succeeded"], result["carried_to_ipfs"]) == (2, 2)
    assert set(Token.objects.filter(pk__in=[t.pk for t in tokens]).values_list("status", flat=True)) == {
        "ready"
    }


def test_the_image_task_leaves_the_ipfs_stage_to_its_own_task_while_the_keeper_waits():
    """Found in review: the carry-on claimed a whole IPFS batch while the keeper's task waited
    for a free worker."""
    import time

    from glisk.core.models import SystemState
    from lifecycle.tasks import image_stage

    # The reveal task was queued 5 s ago and no worker has started it.
    SystemState.objects.update_or_create(
        key="nudge.reveal", defaults={"value": {"queued_until": time.time() + 10}}
    )
    tokens = TokenFactory.create_batch(2)
    result = image_stage()
    assert result["succeeded"] == 2
    assert result["carried_to_ipfs"] == 0
    assert set(Token.objects.filter(pk__in=[t.pk for t in tokens]).values_list("status", flat=True)) == {
        "uploading"
    }


def test_the_image_task_pins_each_batch_before_generating_the_next(settings):
    """Through a mint-out every worker is generating: a batch pinned as soon as it is made gives
    the keeper tokens to reveal from the first batch on, not after the last image."""
    from lifecycle.tasks import image_stage

    configure(settings, worker_batch_size=2)
    tokens = TokenFactory.create_batch(6)
    result = image_stage()
    assert (result["succeeded"], result["carried_to_ipfs"]) == (6, 6)
    moves = list(
        TokenTransition.objects.filter(token__in=tokens, to_status__in=["uploading", "ready"])
        .order_by("created_at", "pk")
        .values_list("to_status", flat=True)
    )
    assert moves == ["uploading", "uploading", "ready", "ready"] * 3


@pytest.mark.parametrize("stage", ["image", "ipfs"])
def test_a_batch_costs_the_same_statements_however_many_tokens_it_holds(settings, tmp_path, stage):
    """The stages are set-based: a batch of 20 takes exactly the statements a batch of 2 does
    (each provider call is per token; nothing in the database is)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from lifecycle.providers.ipfs import LocalPinner
    from lifecycle.services.stages import StageReport
    from lifecycle.services.stages.image import image_generate_batch
    from lifecycle.services.stages.ipfs import ipfs_pin_batch

    statements = []
    for size in (1, 2, 20):  # the first round queues the next stage's task; the others find it queued
        tokens = TokenFactory.create_batch(size)
        image_stage_run(worker_id="setup", provider=LocalImageProvider(size=16)) if stage == "ipfs" else None
        status = "uploading" if stage == "ipfs" else "detected"
        claim = token_claim(statuses=[status], worker_id="w", limit=size, lease_seconds=60)
        assert len(claim.tokens) == size
        report = StageReport()
        with CaptureQueriesContext(connection) as queries:
            if stage == "image":
                image_generate_batch(
                    tokens=claim.tokens, worker_id="w", provider=LocalImageProvider(size=16), report=report
                )
            else:
                ipfs_pin_batch(
                    tokens=claim.tokens, worker_id="w", pinner_=LocalPinner(tmp_path), report=report
                )
        assert report.succeeded == size
        statements.append(len(queries.captured_queries))
        Token.objects.filter(pk__in=[t.pk for t in tokens]).update(status="revealed")
    assert statements[1] == statements[2], statements


class _Billing(LocalImageProvider):
    """A provider that bills per call (as Replicate does), recording each; `during` runs in the
    first call."""

    network_bound = True

    def __init__(self, during=None):
        super().__init__(size=16)
        self.paid, self.during = [], during

    def generate(self, *, prompt, token_id, **options):
        self.paid.append(token_id)
        if self.during and len(self.paid) == 1:
            self.during()
        return super().generate(prompt=prompt, token_id=token_id, **options)


def test_a_call_queued_behind_others_is_not_bought_for_a_token_failed_meanwhile():
    """Found in review: the batch's leases were checked once, before all its calls."""
    from lifecycle.services.operator import operator_mark_failed
    from lifecycle.services.stages import StageReport
    from lifecycle.services.stages.image import image_generate_batch

    tokens = [TokenFactory.create(status="generating", prompt_text="p") for _ in range(3)]
    claim = token_claim(statuses=["generating"], worker_id="w1", limit=3, lease_seconds=60)
    first = claim.tokens[0].pk

    def operator_fails_the_others():
        for t in tokens:
            if t.pk != first:
                operator_mark_failed(token_id=t.pk, operator="op", reason="stop it")

    provider = _Billing(during=operator_fails_the_others)
    report = StageReport()
    image_generate_batch(tokens=claim.tokens, worker_id="w1", provider=provider, report=report)
    assert provider.paid == [first]
    assert (report.succeeded, report.lost) == (1, 2)
    assert {t.status for t in Token.objects.exclude(pk=first).filter(pk__in=[t.pk for t in tokens])} == {
        "failed"
    }


class _OneBadDisk(FileSystemStorage):
    """A per-file storage (the S3 path) whose save fails for one token's image."""

    failing: int | None = None

    def save(self, name, content, max_length=None):
        if self.failing and str(name).startswith(f"images/{self.failing}-"):
            raise OSError(5, "I/O error")
        return super().save(name, content, max_length=max_length)


def test_one_image_the_storage_refuses_costs_only_that_token(settings, tmp_path):
    """Found in review: one failed save failed the whole batch, and its stored images were paid
    for again."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}._OneBadDisk", "OPTIONS": {"location": str(tmp_path)}},
    }
    tokens = [TokenFactory.create(status="generating", prompt_text="p") for _ in range(3)]
    _OneBadDisk.failing = tokens[2].pk
    try:
        provider = _Billing()
        report = image_stage_run(worker_id="w1", budget_seconds=1, provider=provider)
    finally:
        _OneBadDisk.failing = None
    assert (report.succeeded, report.retried) == (2, 1)
    bad = ImageJob.objects.get(token=tokens[2])
    assert bad.outcome == "transient_error" and bad.error_class == "unexpected_OSError"
    assert Token.objects.get(pk=tokens[2].pk).status == "generating"
    assert {t.status for t in Token.objects.filter(pk__in=[t.pk for t in tokens[:2]])} == {"uploading"}


def test_the_carry_on_does_not_wait_for_ipfs_tokens_backing_off(settings, monkeypatch):
    """Found in review: with the handed-on tokens taken by the queued IPFS task, each carry-on
    waited for a backing-off token before the next image batch."""
    import lifecycle.tasks as tasks

    real = tasks.ipfs_stage_run

    def another_worker_took_them(**options):
        token_claim(statuses=["uploading"], worker_id="other", limit=100, lease_seconds=600)
        return real(**options)

    monkeypatch.setattr(tasks, "ipfs_stage_run", another_worker_took_them)
    configure(settings, worker_batch_size=2)
    for seconds in (4, 8, 12):
        TokenFactory.create(status="uploading", next_attempt_at=timezone.now() + timedelta(seconds=seconds))
    fresh = TokenFactory.create_batch(6)
    started = timezone.now()
    assert tasks.image_stage()["succeeded"] == 6
    # Every image batch went out at once; only after the last one may the task wait (within
    # CARRY_ON_SECONDS) for the IPFS tokens backing off.
    handed_on = TokenTransition.objects.filter(token__in=fresh, to_status="uploading")
    assert max(t.created_at for t in handed_on) - started < timedelta(seconds=3)


def test_update_from_values_refuses_what_the_orm_refuses():
    """Found in review: the VALUES casts cut a text longer than its column; `where` None."""
    from django.db import DataError, transaction

    from glisk.core.bulk import update_from_values

    token = TokenFactory.create(status="generating")
    with pytest.raises(DataError), transaction.atomic():
        update_from_values(Token, {token.pk: {"last_error": "x" * 600}})
    with pytest.raises(ValueError, match="None"):
        update_from_values(Token, {token.pk: {"last_error": "a"}}, where={"lease_expires_at": None})


class _OddAnswer(LocalImageProvider):
    """Answers one token with what the database cannot keep (a 70-character content type)."""

    def __init__(self, odd):
        super().__init__(size=16)
        self.odd, self.calls = odd, []

    def generate(self, *, prompt, token_id, **options):
        self.calls.append(token_id)
        image = super().generate(prompt=prompt, token_id=token_id, **options)
        if token_id == self.odd:
            return dataclasses.replace(image, content_type="image/" + "x" * 70)
        return image


@pytest.mark.django_db(transaction=True)
def test_one_token_that_breaks_its_batch_holds_back_no_other_and_fails_at_the_cap(settings, fast_retries):
    """Found in review: an error outside the provider call for one token (here, an answer the
    attempt row cannot hold) set the whole batch back with no attempt counted, so its
    batch-mates never moved and the token came back forever."""
    configure(settings, image_max_attempts=2)
    tokens = [TokenFactory.create() for _ in range(3)]
    odd = tokens[1].pk
    provider = _OddAnswer(odd)
    report = run(provider)
    assert report.succeeded == 2
    statuses = dict(Token.objects.values_list("pk", "status"))
    assert statuses == {tokens[0].pk: "uploading", odd: "failed", tokens[2].pk: "uploading"}
    token = Token.objects.get(pk=odd)
    assert token.image_attempts == 2 and token.failed_stage == "generating"
    assert token.last_error == "image stage: unexpected DataError (gave up after 2 attempts)"
    # The batch's call, the call alone, and one more at the next attempt: bounded by the cap.
    assert provider.calls.count(odd) == 3
    assert provider.calls.count(tokens[0].pk) == 2  # its batch's call, then alone


class _SlowOddAnswer(_OddAnswer):
    def generate(self, *, prompt, token_id, **options):
        time.sleep(0.3)
        return super().generate(prompt=prompt, token_id=token_id, **options)


@pytest.mark.django_db(transaction=True)
def test_a_broken_batch_is_not_worked_again_past_the_task_budget(settings):
    """Found in review: working a broken batch again one token at a time ignored the task's
    budget (with slow providers it could outlast the task's timeout). Past the budget the
    tokens left go back uncounted."""
    configure(settings, retry_backoff_max_seconds=300.0)
    tokens = [TokenFactory.create() for _ in range(3)]
    provider = _SlowOddAnswer(tokens[1].pk)
    report = image_stage_run(worker_id="w-test", budget_seconds=0.2, provider=provider)
    assert (report.succeeded, report.failed, report.retried) == (0, 0, 0)
    assert len(provider.calls) == 3  # the batch's calls, and none after the budget
    for token in Token.objects.all():
        assert token.status == "generating" and token.image_attempts == 0 and token.claimed_by == ""
        assert token.last_error == "unexpected DataError in the stage; retried later"


@pytest.mark.django_db(transaction=True)
def test_giving_up_on_a_token_an_operator_moved_meanwhile_counts_it_lost():
    """Found in review: an operator's move between a worker's read of a token and its failing
    it raised out of the stage, and the rest of the batch was left leased."""
    from lifecycle.providers.errors import ProviderError
    from lifecycle.services.stages.outcomes import StageReport, retry_or_fail

    token = TokenFactory.create(
        status="failed", claimed_by="w-test", lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    report = StageReport()
    retry_or_fail(
        token=token,
        worker_id="w-test",
        actor="stage:image",
        error=ProviderError("refused", transient=False, error_class="http_422"),
        provider="test",
        attempts_field="image_attempts",
        attempts=1,
        max_attempts=1,
        report=report,
    )
    assert (report.failed, report.lost) == (0, 1)
    assert Token.objects.get(pk=token.pk).status == "failed"


@pytest.mark.parametrize("status", ["429", "503"])
def test_a_refused_download_gets_the_paid_output_again_not_a_new_prediction(
    replicate, replicate_provider, status
):
    """Found in review: a 429 or 5xx from the file host counted an attempt, and the next attempt
    bought a new prediction although the paid one's output is kept for an hour."""
    replicate.file_faults.append(status)
    token = TokenFactory.create()
    report = run(replicate_provider)
    assert (report.throttled, report.retried) == ((1, 0) if status == "429" else (0, 1))
    token.refresh_from_db()
    assert token.status == "generating"
    assert token.image_attempts == (0 if status == "429" else 1)  # a 429 is never the token's fault
    token.next_attempt_at = timezone.now()
    token.save(update_fields=["next_attempt_at"])
    assert run(replicate_provider).succeeded == 1
    token.refresh_from_db()
    assert token.status == "uploading"
    assert replicate.creates == 1
