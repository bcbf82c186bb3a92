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
    older than that; of two threads that computed the same key at once, the one that started
    later is kept.

    Expired entries are dropped at least once per `seconds` as new ones come in, so what is held
    is about what was asked in the last moment; `max_entries` bounds it whatever the traffic (past
    it, everything is dropped and computed again)."""

    def __init__(self, *, max_entries: int = 1_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._max_entries = max_entries
        self._clock = clock
        self._swept_at = clock()

    def get_or_compute(self, key: K, seconds: float, compute: Callable[[], V]) -> V:
        if seconds <= 0:
            return compute()
        now = self._clock()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        value = compute()
        if now - self._swept_at >= seconds or len(self._entries) >= self._max_entries:
            self._sweep(now)
        kept = self._entries.get(key)
        if kept is None or kept[0] < now + seconds:  # not replacing a read that started later
            self._entries[key] = (now + seconds, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for key, (expires, _) in list(self._entries.items()):  # a copy: other threads write too
            if expires <= now:
                self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
