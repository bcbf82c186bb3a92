"""Request budgets of the providers' accounts, kept in PostgreSQL and shared by every worker.

A provider rations requests per account (Pinata 180 a minute, Replicate 600 creates and 3,000
reads a minute, Alchemy compute units per second), not per process: N clusters with a limiter
each would send N times the rate. So each account has one row, a token bucket (`rate` units a
second, up to `burst` kept), and every request is admitted through it in one locked step:

- `budget_acquire` admits a request now or at its turn: it takes the units, possibly ahead of
  time (the bucket goes negative), and sleeps until its turn comes. Callers queue fairly, in the
  order they asked, and the rate holds across machines because the clock is the database's.
- `budget_available` and `budget_room` tell, without taking anything, how many units are there
  now or within a few seconds: a stage claims only the tokens its budget lets it work soon.
- `budget_throttled` records a 429 that came anyway (another application on the same key, a
  limit lower than configured): the whole account pauses for the time the provider named.

A limit of 0 means unlimited: no row is read or written.

Call these outside any transaction: inside one, the budget's row stays locked until it commits.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger(__name__)

PINATA = "pinata"
REPLICATE_CREATE = "replicate.create"
REPLICATE_READ = "replicate.read"
RPC = "rpc"
BUDGETS = (PINATA, REPLICATE_CREATE, REPLICATE_READ, RPC)

# What each budget's units are, for operators.
UNITS = {PINATA: "requests", REPLICATE_CREATE: "requests", REPLICATE_READ: "requests", RPC: "compute units"}


@dataclass(frozen=True)
class Limit:
    """`rate` units a second, at most `burst` kept for a burst; rate 0 is unlimited."""

    rate: float
    burst: float

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


def budget_limit(name: str) -> Limit:
    """The configured limit of a budget (settings, so every process applies the same one)."""
    c = settings.GLISK
    if name == PINATA:
        return Limit(c.pinata_requests_per_minute / 60.0, c.pinata_burst)
    if name == REPLICATE_CREATE:
        return Limit(c.replicate_creates_per_minute / 60.0, c.replicate_create_burst)
    if name == REPLICATE_READ:
        return Limit(c.replicate_reads_per_minute / 60.0, c.replicate_read_burst)
    if name == RPC:
        return Limit(c.rpc_compute_units_per_second, c.rpc_compute_units_burst)
    raise ValueError(f"unknown budget {name!r}")


class BudgetExhausted(Exception):
    """The request's turn is further away than the caller will wait; nothing was taken."""

    def __init__(self, name: str, wait: float):
        super().__init__(f"the {name} budget has no room for {wait:.1f}s")
        self.name = name
        self.wait = wait


@dataclass(frozen=True)
class _State:
    tokens: float
    updated_at: datetime
    paused_until: datetime | None
    now: datetime


_LOCK = """
    UPDATE core_providerbudget SET name = name WHERE name = %s
    RETURNING tokens, updated_at, paused_until, clock_timestamp()
"""
_READ = "SELECT tokens, updated_at, paused_until, clock_timestamp() FROM core_providerbudget WHERE name = %s"
_CREATE = """
    INSERT INTO core_providerbudget
        (name, tokens, updated_at, admitted, throttled, throttled_seconds, waited_seconds)
    VALUES (%s, %s, clock_timestamp(), 0, 0, 0, 0) ON CONFLICT (name) DO NOTHING
"""


def _state(name: str, limit: Limit, *, lock: bool) -> _State:
    """The budget's row (made full on first use), locked until the transaction ends if `lock`.
    The lock is taken by an UPDATE so that `clock_timestamp()` is read once the row is ours."""
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute(_LOCK if lock else _READ, [name])
            row = cursor.fetchone()
            if row is not None:
                return _State(float(row[0]), row[1], row[2], row[3])
            cursor.execute(_CREATE, [name, limit.burst])
    raise RuntimeError(f"budget {name} could not be created")  # pragma: no cover


def _available(state: _State, limit: Limit) -> float:
    elapsed = max(0.0, (state.now - state.updated_at).total_seconds())
    return min(limit.burst, state.tokens + limit.rate * elapsed)


def _paused_for(state: _State) -> float:
    if state.paused_until is None:
        return 0.0
    return max(0.0, (state.paused_until - state.now).total_seconds())


def budget_acquire(*, name: str, cost: float = 1.0, max_wait: float | None = None) -> float:
    """Admit one request of `cost` units through the budget: take them and sleep until the
    request's turn. Returns the seconds waited. With `max_wait`, a turn further away than that
    raises `BudgetExhausted` and takes nothing (the caller gives its work back instead)."""
    limit = budget_limit(name)
    if limit.unlimited:
        return 0.0
    # A request dearer than the burst (a large JSON-RPC batch) costs what it costs: it waits
    # until the rate has paid for the part the bucket does not hold.
    with transaction.atomic():
        state = _state(name, limit, lock=True)
        left = _available(state, limit) - cost
        # After a 429 the bucket refills from the end of the pause on (its `updated_at` is then in
        # the future), so what queues during a pause goes out at the rate, not all at its end.
        wait = _paused_for(state) + (-left / limit.rate if left < 0 else 0.0)
        if max_wait is not None and wait > max_wait:
            raise BudgetExhausted(name, wait)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE core_providerbudget SET tokens = %s, updated_at = %s, admitted = admitted + %s,"
                " waited_seconds = waited_seconds + %s WHERE name = %s",
                [left, max(state.now, state.updated_at), cost, wait, name],
            )
    if wait > 0:
        wait += _sleep_through_pauses(name, limit, wait, known=state.paused_until)
    return wait


# How often a request waiting for its turn looks whether a 429 paused the account meanwhile.
PAUSE_CHECK_SECONDS = 1.0


def _sleep_through_pauses(name: str, limit: Limit, wait: float, *, known: datetime | None) -> float:
    """Sleep `wait` seconds, pushing the end back by every pause a 429 starts meanwhile (one
    admitted before it must not go out during it): the request keeps its place in the line, the
    line resumes where it was when the pause ends. Returns the seconds added."""
    added = 0.0
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, PAUSE_CHECK_SECONDS))
        state = _state(name, limit, lock=False)
        if state.paused_until is None or state.paused_until <= state.now:
            continue
        if known is not None and state.paused_until <= known:
            continue
        start = max(state.now, known) if known is not None else state.now
        extra = (state.paused_until - start).total_seconds()
        deadline += extra
        added += extra
        known = state.paused_until
    return added


def budget_available(*, name: str) -> float:
    """Units that could be taken now without waiting (inf when unlimited; 0 while paused)."""
    limit = budget_limit(name)
    if limit.unlimited:
        return math.inf
    state = _state(name, limit, lock=False)
    if _paused_for(state) > 0:
        return 0.0
    return max(0.0, _available(state, limit))


def budget_room(*, name: str, within: float) -> float:
    """Units that could be admitted within `within` seconds: what the bucket holds now plus what
    it gains meanwhile, less what is owed to requests admitted ahead (inf when unlimited)."""
    limit = budget_limit(name)
    if limit.unlimited:
        return math.inf
    state = _state(name, limit, lock=False)
    left = within - _paused_for(state)
    if left < 0:
        return 0.0
    return max(0.0, _available(state, limit) + limit.rate * left)


def budget_wait(*, name: str, cost: float = 1.0) -> float:
    """Seconds until `cost` units could be taken without waiting (0 now; 0 when unlimited)."""
    limit = budget_limit(name)
    if limit.unlimited:
        return 0.0
    state = _state(name, limit, lock=False)
    short = min(cost, limit.burst) - _available(state, limit)
    return _paused_for(state) + (short / limit.rate if short > 0 else 0.0)


def budget_throttled(*, name: str, seconds: float) -> None:
    """The provider answered 429 anyway: pause the whole account for `seconds` (what it named),
    and spend what the bucket held, so that nobody's request goes out before the pause ends."""
    limit = budget_limit(name)
    seconds = max(0.0, min(seconds, settings.GLISK.throttle_wait_max_seconds))
    logger.warning("budget.throttled", extra={"budget": name, "pause": round(seconds, 2)})
    if limit.unlimited:
        return
    with transaction.atomic():
        state = _state(name, limit, lock=True)
        until = state.now + timedelta(seconds=seconds)
        if state.paused_until is not None and state.paused_until > until:
            until = state.paused_until
        # The bucket is spent, and refills only from the end of the pause on.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE core_providerbudget SET tokens = LEAST(%s, 0), updated_at = %s, paused_until = %s,"
                " throttled = throttled + 1, throttled_seconds = throttled_seconds + %s WHERE name = %s",
                [_available(state, limit), max(until, state.updated_at), until, seconds, name],
            )


def budget_reset(*, name: str) -> None:
    """Forget a budget's state (it starts full again); for operators and tests."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM core_providerbudget WHERE name = %s", [name])


@dataclass(frozen=True)
class BudgetStatus:
    """A budget as operators see it: its limit, what it holds now, and what it has done."""

    name: str
    unit: str
    limit: Limit
    available: float  # units there now (the burst when it was never used)
    paused_for: float  # seconds the account is still paused after a 429
    admitted: float
    throttled: int
    throttled_seconds: float
    waited_seconds: float


def budgets_status() -> list[BudgetStatus]:
    """Every budget, configured or used (one query)."""
    rows = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, tokens, updated_at, paused_until, admitted, throttled, throttled_seconds,"
            " waited_seconds, clock_timestamp() FROM core_providerbudget"
        )
        for name, tokens, updated_at, paused_until, admitted, throttled, throttled_s, waited, now in cursor:
            rows[name] = (
                _State(float(tokens), updated_at, paused_until, now),
                admitted,
                throttled,
                throttled_s,
                waited,
            )
    statuses = []
    for name in BUDGETS:
        limit = budget_limit(name)
        if name not in rows:
            statuses.append(BudgetStatus(name, UNITS[name], limit, limit.burst, 0.0, 0.0, 0, 0.0, 0.0))
            continue
        state, admitted, throttled, throttled_s, waited = rows[name]
        statuses.append(
            BudgetStatus(
                name=name,
                unit=UNITS[name],
                limit=limit,
                available=0.0 if _paused_for(state) > 0 else max(0.0, _available(state, limit)),
                paused_for=_paused_for(state),
                admitted=float(admitted),
                throttled=int(throttled),
                throttled_seconds=float(throttled_s),
                waited_seconds=float(waited),
            )
        )
    return statuses
