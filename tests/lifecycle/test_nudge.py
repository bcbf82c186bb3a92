from __future__ import annotations

import json

import pytest
from django_q.models import OrmQ

from glisk.core.models import SystemState
from glisk.core.stages import stage_nudge, stage_started

pytestmark = pytest.mark.django_db


def test_nudges_are_debounced_until_the_queued_task_starts():
    assert stage_nudge(stage="ipfs")
    assert not stage_nudge(stage="ipfs")
    assert not stage_nudge(stage="ipfs")
    assert OrmQ.objects.count() == 1
    assert stage_nudge(stage="image")  # stages are independent
    stage_started(stage="ipfs")
    assert stage_nudge(stage="ipfs")  # work that became due while the task runs gets a task
    assert OrmQ.objects.count() == 3


def test_a_flag_whose_task_never_started_expires():
    assert stage_nudge(stage="reveal")
    SystemState.objects.filter(key="nudge.reveal").update(value=json.loads('{"queued_until": 1}'))
    assert stage_nudge(stage="reveal")
    assert OrmQ.objects.count() == 2


def test_a_rolled_back_nudge_leaves_no_flag_and_no_task():
    from django.db import transaction

    def nudge_then_fail() -> None:
        with transaction.atomic():
            stage_nudge(stage="image")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        nudge_then_fail()
    assert OrmQ.objects.count() == 0
    assert stage_nudge(stage="image")
