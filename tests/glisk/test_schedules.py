"""Clusters that start together create each schedule once; duplicates an earlier start left are
removed (django-q2 does not make a schedule's name unique)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connections
from django_q.models import Schedule

from glisk.core.schedules import SCHEDULES, ensure_schedules


@pytest.mark.django_db(transaction=True)
def test_clusters_starting_together_create_each_schedule_once():
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            ensure_schedules()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert Counter(Schedule.objects.values_list("name", flat=True)) == dict.fromkeys(SCHEDULES, 1)


@pytest.mark.django_db
def test_duplicates_left_by_an_earlier_start_are_removed():
    name, (func, _) = next(iter(SCHEDULES.items()))
    for _ in range(2):
        Schedule.objects.create(name=name, func=func, schedule_type=Schedule.MINUTES, minutes=1, repeats=-1)
    ensure_schedules()
    assert Schedule.objects.filter(name=name).count() == 1
