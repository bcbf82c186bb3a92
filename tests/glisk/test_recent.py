"""The short per-process memory of repeated reads (glisk.core.recent)."""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from glisk.core.recent import Recent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_kept_for_its_seconds_from_when_it_was_computed():
    clock, calls = Clock(), []
    recent: Recent[str, int] = Recent(clock=clock)

    def compute() -> int:
        calls.append(clock.now)
        clock.now += 0.25  # the computation itself takes time
        return len(calls)

    assert recent.get_or_compute("a", 1.0, compute) == 1
    clock.now = 100.9
    assert recent.get_or_compute("a", 1.0, compute) == 1
    clock.now = 101.0  # one second after the first computation started, however long it took
    assert recent.get_or_compute("a", 1.0, compute) == 2
    assert recent.get_or_compute("b", 1.0, compute) == 3
    assert recent.get_or_compute("b", 0, compute) == 4  # 0 s: always computed, nothing kept
    assert calls == [100.0, 101.0, 101.25, 101.5]


def test_expired_entries_go_as_new_ones_come_and_the_bound_holds_whatever_the_traffic():
    clock = Clock()
    recent: Recent[int, int] = Recent(max_entries=3, clock=clock)
    for key in range(3):
        recent.get_or_compute(key, 1.0, functools.partial(int, key))
    clock.now += 2  # all three expired: the next store sweeps them
    recent.get_or_compute(10, 1.0, lambda: 10)
    assert len(recent) == 1
    recent.get_or_compute(11, 5.0, lambda: 11)
    recent.get_or_compute(12, 5.0, lambda: 12)
    recent.get_or_compute(13, 5.0, lambda: 13)  # three alive, none expired: it starts over
    assert len(recent) == 1 and recent.get_or_compute(13, 5.0, lambda: -1) == 13


def test_threads_asking_for_a_key_being_computed_wait_for_that_one_computation():
    recent: Recent[str, str] = Recent()
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_read() -> str:
        calls.append(threading.get_ident())
        started.set()
        assert release.wait(5)
        return "page"

    with ThreadPoolExecutor(max_workers=9) as pool:
        first = pool.submit(recent.get_or_compute, "key", 5.0, slow_read)
        assert started.wait(5)
        others = [pool.submit(recent.get_or_compute, "key", 5.0, slow_read) for _ in range(7)]
        other_key = pool.submit(recent.get_or_compute, "other", 5.0, lambda: "not waiting")
        assert other_key.result(5) == "not waiting"  # only the same key waits
        time.sleep(0.1)
        assert not any(f.done() for f in others)
        release.set()
        assert [f.result(5) for f in [first, *others]] == ["page"] * 8
    assert len(calls) == 1


def test_when_the_computation_fails_each_waiting_thread_computes_for_itself():
    recent: Recent[str, str] = Recent()
    started, release = threading.Event(), threading.Event()

    def failing_read() -> str:
        started.set()
        assert release.wait(5)
        raise ConnectionError("database went away")

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(recent.get_or_compute, "key", 5.0, failing_read)
        assert started.wait(5)
        others = [pool.submit(recent.get_or_compute, "key", 5.0, lambda: "read again") for _ in range(3)]
        time.sleep(0.1)
        release.set()
        with pytest.raises(ConnectionError):
            first.result(5)
        assert [f.result(5) for f in others] == ["read again"] * 3
    assert len(recent) == 0  # a failure is not kept; the waiters' own reads are not either
    assert recent.get_or_compute("key", 5.0, lambda: "kept") == "kept"


def test_a_computation_that_asks_for_its_own_key_does_not_wait_for_itself():
    recent: Recent[str, str] = Recent()

    def reentrant() -> str:
        return "outer of " + recent.get_or_compute("key", 1.0, lambda: "inner")

    assert recent.get_or_compute("key", 1.0, reentrant) == "outer of inner"
    assert recent.get_or_compute("key", 1.0, lambda: "again") == "outer of inner"
