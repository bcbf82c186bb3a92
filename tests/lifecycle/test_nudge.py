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


def test_a_starting_cluster_sweeps_past_the_debounce():
    """The flag may stand for a task a dead cluster had taken: the start-up sweep queues anew."""
    from glisk.core.tasks import startup_sweep, sweep
    from tests.factories import TokenFactory

    TokenFactory.create()  # the image stage has work
    assert stage_nudge(stage="image")
    sweep()
    assert OrmQ.objects.count() == 1  # the ordinary sweep is debounced
    startup_sweep()
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


@pytest.mark.django_db(transaction=True)
def test_a_task_starting_during_a_debounced_nudge_waits_for_its_commit():
    """Else the task could start, find nothing due yet, and leave the new work to the sweeper."""
    import threading

    from django.db import connections, transaction

    assert stage_nudge(stage="image")  # a task is queued and not started yet
    nudged, release, started = threading.Event(), threading.Event(), threading.Event()

    def make_work_due() -> None:
        try:
            with transaction.atomic():
                assert not stage_nudge(stage="image")  # debounced: the queued task will do it
                nudged.set()
                release.wait(10)
        finally:
            connections.close_all()

    def task_starts() -> None:
        try:
            stage_started(stage="image")
            started.set()
        finally:
            connections.close_all()

    maker = threading.Thread(target=make_work_due)
    maker.start()
    assert nudged.wait(10)
    task = threading.Thread(target=task_starts)
    task.start()
    assert not started.wait(0.5)  # the task's start waits for the nudging transaction
    release.set()
    maker.join(10)
    task.join(10)
    assert started.is_set()
