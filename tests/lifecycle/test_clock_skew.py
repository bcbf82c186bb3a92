"""Which attempts belong to a token's current stage is decided on the database's clock, whatever
the clocks of the machines that wrote them. With each machine's own clock, a worker whose clock
was behind took its own finished attempt for an older one (and, had it died before handing the
token on, its successor paid for the image again); one whose clock was ahead had its attempt
taken for the current stage's after an operator's regenerate (an old image reused)."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from lifecycle.models import AttemptOutcome, ImageJob, IpfsRecord
from lifecycle.services.stages.image import _stint_jobs
from lifecycle.services.stages.ipfs import _pinned_in_stint
from lifecycle.services.tokens import token_transition
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db


def clock_off_by(seconds: float):
    """This process's clock off by `seconds`, as another machine's may be (the database's not)."""
    real = timezone.now
    return mock.patch("django.utils.timezone.now", side_effect=lambda: real() + timedelta(seconds=seconds))


def image_job(token) -> ImageJob:
    return ImageJob.objects.create(
        token=token, attempt=1, provider="replicate", prompt_text="p", outcome=AttemptOutcome.SUCCEEDED
    )


def test_an_attempt_by_a_worker_whose_clock_is_behind_belongs_to_the_stage():
    token = TokenFactory.create(status="detected")
    token_transition(token_id=token.pk, to="generating", actor="test", reason="claimed")
    with clock_off_by(-600):
        job = image_job(token)
        pin = IpfsRecord.objects.create(
            token=token,
            kind="image",
            attempt=1,
            provider="pinata",
            cid="bafkx",
            outcome=AttemptOutcome.SUCCEEDED,
        )
    token.refresh_from_db()
    assert [j.pk for j in _stint_jobs([token])[token.pk]] == [job.pk]
    assert _pinned_in_stint([token]) == {(token.pk, "image", pin.cid)}


def test_an_attempt_by_a_worker_whose_clock_is_ahead_is_not_reused_after_a_regenerate():
    token = TokenFactory.create(status="detected")
    token_transition(token_id=token.pk, to="generating", actor="test", reason="claimed")
    with clock_off_by(+600):
        image_job(token)
    # An operator's regenerate (back to detected), then a new stage.
    token_transition(token_id=token.pk, to="detected", actor="operator:ops", reason="regenerate")
    token_transition(token_id=token.pk, to="generating", actor="test", reason="claimed again")
    token.refresh_from_db()
    assert _stint_jobs([token]) == {}
