"""The providers' request budgets: one token bucket per account in PostgreSQL, shared by every
process that admits requests through it."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glisk.core.budgets import (
    PINATA,
    BudgetExhausted,
    budget_acquire,
    budget_available,
    budget_throttled,
    budget_wait,
)
from glisk.core.models import ProviderBudget
from tests.e2e.conftest import test_database_url
from tests.lifecycle.conftest import configure

ROOT = Path(__file__).resolve().parents[2]

# One process admitting requests through the shared Pinata budget for `seconds`, printing the
# time of every admission.
WORKER = """
import json, os, sys, time
import django
django.setup()
from glisk.core.budgets import budget_acquire
start, seconds, admitted = float(sys.argv[1]), float(sys.argv[2]), []
while time.time() < start:
    time.sleep(0.001)
while time.time() < start + seconds:
    budget_acquire(name="pinata")
    admitted.append(time.time())
print(json.dumps(admitted))
"""


@pytest.mark.django_db(transaction=True)
def test_two_processes_sharing_one_budget_stay_within_five_percent_of_the_limit_over_30_s():
    rate, burst, seconds = 10.0, 5, 30.0
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": test_database_url(),
        "PINATA_REQUESTS_PER_MINUTE": str(rate * 60),
        "PINATA_BURST": str(burst),
        "LOG_LEVEL": "WARNING",
    }
    start = time.time() + 3  # both processes have set Django up by then
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(start), str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    times = []
    for worker in workers:
        out, _ = worker.communicate(timeout=seconds + 60)
        assert worker.returncode == 0
        admitted = json.loads(out.strip().splitlines()[-1])
        assert len(admitted) > rate * seconds / 4  # each process got its share, roughly
        times += admitted
    times = [t for t in times if t < start + seconds]
    limit = burst + rate * seconds
    assert 0.95 * rate * seconds <= len(times) <= 1.05 * limit
    # And no stretch of it ran ahead of the rate: any 5 s saw at most the burst plus 5 s of rate.
    times.sort()
    for i, first in enumerate(times):
        window = sum(1 for t in times[i:] if t < first + 5)
        assert window <= burst + rate * 5 + 1


@pytest.mark.django_db
def test_an_unlimited_budget_is_never_read_or_written(settings):
    configure(settings, pinata_requests_per_minute=0.0)
    assert budget_acquire(name=PINATA) == 0.0
    assert budget_available(name=PINATA) == float("inf")
    assert not ProviderBudget.objects.exists()


@pytest.mark.django_db
def test_a_turn_further_than_the_caller_waits_takes_nothing(settings):
    configure(settings, pinata_requests_per_minute=60.0, pinata_burst=2.0)
    assert budget_acquire(name=PINATA) == 0.0
    assert budget_acquire(name=PINATA) == 0.0
    assert budget_available(name=PINATA) < 1
    with pytest.raises(BudgetExhausted) as raised:
        budget_acquire(name=PINATA, max_wait=0.5)
    assert 0.5 < raised.value.wait <= 1.0
    before = ProviderBudget.objects.get(name=PINATA)
    assert before.admitted == 2.0
    waited = budget_acquire(name=PINATA, max_wait=2)  # its turn: within a second
    assert 0.5 < waited <= 1.05


@pytest.mark.django_db
def test_a_429_pauses_the_whole_account_for_the_time_it_named(settings):
    configure(settings, pinata_requests_per_minute=600.0, pinata_burst=10.0, throttle_wait_max_seconds=5.0)
    assert budget_available(name=PINATA) == 10
    budget_throttled(name=PINATA, seconds=3)
    assert budget_available(name=PINATA) == 0
    assert 2.5 < budget_wait(name=PINATA) <= 3.1  # the pause, then the refill of one request
    budget_throttled(name=PINATA, seconds=3600)  # cut to THROTTLE_WAIT_MAX_SECONDS
    assert 4.5 < budget_wait(name=PINATA) <= 5.1
    row = ProviderBudget.objects.get(name=PINATA)
    assert row.throttled == 2 and row.throttled_seconds == 8.0


@pytest.mark.django_db(transaction=True)
def test_what_queues_during_a_pause_goes_out_at_the_rate_afterwards(settings):
    """After a 429 the bucket refills from the end of the pause: requests that queued during it
    are spaced at the rate, not all released at its end (which would draw the next 429)."""
    import threading

    from django.db import connections

    configure(settings, pinata_requests_per_minute=1200.0, pinata_burst=1.0, throttle_wait_max_seconds=5.0)
    budget_throttled(name=PINATA, seconds=1.0)
    released: list[float] = []

    def request() -> None:
        try:
            budget_acquire(name=PINATA)
            released.append(time.monotonic())
        finally:
            connections.close_all()

    started = time.monotonic()
    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    released.sort()
    assert released[0] - started >= 0.9  # nobody before the pause ends
    assert released[-1] - released[0] >= 0.35  # ten at 20 a second: spread over ~0.45 s


@pytest.mark.django_db(transaction=True)
def test_requests_admitted_before_a_429_wait_out_its_pause_and_keep_their_places(settings):
    """Found in review: a request admitted before a 429 slept its original turn and went out
    during the pause (drawing more 429s), and its debt was then charged to the requests after it."""
    import threading

    from django.db import connections

    configure(settings, pinata_requests_per_minute=60.0, pinata_burst=1.0, throttle_wait_max_seconds=10.0)
    started = time.monotonic()
    released: list[float] = []

    def request() -> None:
        try:
            budget_acquire(name=PINATA)
            released.append(time.monotonic() - started)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    budget_throttled(name=PINATA, seconds=3.0)  # until ~3.3 s
    for thread in threads:
        thread.join()
    released.sort()
    assert released[0] < 0.3  # the bucket's one, before the 429
    assert released[1] >= 3.2  # nobody during the pause
    assert all(b - a >= 0.8 for a, b in itertools.pairwise(released[1:]))  # then at the rate
    # Their debt was theirs: the next request waits about one turn, not the pause once more.
    assert budget_wait(name=PINATA) <= 2.0
