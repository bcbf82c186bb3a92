"""Answers kept for a moment in one process, for reads that many clients repeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """Values computed less than `seconds` ago, kept in this process only (each web worker has its
    own). An entry lives `seconds` from when its computation started, so what it serves is never
    older than that.

    One computation per key at a time: threads that ask for a key while another thread computes
    it wait for that value (a read already under way when they asked) instead of repeating the
    read, so an expiring entry that many threads poll costs one read, not one per thread. If that
    computation fails, each waiting thread computes for itself. A waiter waits as long as the
    computation takes, so `compute` must not itself wait on another key of the same cache (two
    such computations could wait on each other); a page read is one statement.

    Expired entries are dropped at least once per `seconds` as new ones come in, so what is held
    is about what was asked in the last moment; `max_entries` bounds it whatever the traffic (past
    it, everything is dropped and computed again)."""

    def __init__(self, *, max_entries: int = 1_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._max_entries = max_entries
        self._clock = clock
        self._swept_at = clock()
        self._lock = threading.Lock()
        self._computing: dict[K, _Computation[V]] = {}

    def get_or_compute(self, key: K, seconds: float, compute: Callable[[], V]) -> V:
        if seconds <= 0:
            return compute()
        now = self._clock()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        with self._lock:
            running = self._computing.get(key)
            if running is None:
                mine = self._computing[key] = _Computation[V]()
        if running is not None:
            if running.thread == threading.get_ident():  # asked again from within: no waiting
                return compute()
            running.done.wait()
            return running.value if running.succeeded else compute()
        try:
            mine.value = compute()
            mine.succeeded = True
            if now - self._swept_at >= seconds or len(self._entries) >= self._max_entries:
                self._sweep(now)
            self._entries[key] = (now + seconds, mine.value)
            return mine.value
        finally:
            with self._lock:
                del self._computing[key]
            mine.done.set()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every kept value (tests; a value being computed is still handed to its waiters)."""
        self._entries.clear()

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for key, (expires, _) in list(self._entries.items()):  # a copy: other threads write too
            if expires <= now:
                self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            self._entries.clear()


class _Computation(Generic[V]):
    """A key being computed: by which thread, and its value for the threads that wait."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.done = threading.Event()
        self.succeeded = False
        self.value: V
