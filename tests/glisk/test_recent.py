"""The short per-process memory of repeated reads (glisk.core.recent)."""

from __future__ import annotations

import functools

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


def test_of_two_reads_of_one_key_the_one_that_started_later_is_kept():
    clock = Clock()
    recent: Recent[str, str] = Recent(clock=clock)

    def slow_old_read() -> str:
        clock.now += 0.5
        # Meanwhile another thread read the key afresh (its read started after this one).
        recent.get_or_compute("page", 1.0, lambda: "new")
        return "old"

    assert recent.get_or_compute("page", 1.0, slow_old_read) == "old"
    assert recent.get_or_compute("page", 1.0, lambda: "computed again") == "new"
