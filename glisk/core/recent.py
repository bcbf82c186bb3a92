"""Answers kept for a moment in one process, for reads that many clients repeat."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """Values computed less than `seconds` ago, kept in this process only (each web worker has its
    own). An entry lives `seconds` from when its computation started, so what it serves is never
    older than that. At most `max_entries`: past it the expired entries go, and all of them if that
    is not enough. Two threads that miss the same key both compute it; the later one is kept."""

    def __init__(self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._max_entries = max_entries
        self._clock = clock

    def get_or_compute(self, key: K, seconds: float, compute: Callable[[], V]) -> V:
        if seconds <= 0:
            return compute()
        now = self._clock()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        value = compute()
        if len(self._entries) >= self._max_entries:
            self._evict(now)
        self._entries[key] = (now + seconds, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, now: float) -> None:
        for key, (expires, _) in list(self._entries.items()):  # a copy: other threads write too
            if expires <= now:
                self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
