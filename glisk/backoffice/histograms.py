"""Cumulative histograms for /metrics, kept in SystemState and advanced at each scrape.

Each histogram has a watermark: a scrape counts only the rows that finished after it and at
least SETTLE before the database's clock, in an indexed range (`finished_at`, `revealed_at`),
then moves it. Prometheus gets counters that only grow, as its `histogram_quantile(rate(…))`
expects, and no scrape reads a whole table. A row stamped more than SETTLE before it commits
(a transaction open that long, or a worker whose clock runs that far behind the database's) is
not counted: the plain counters still count it. Concurrent scrapes do not queue: the one that
finds the row locked serves the figures as they stand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, FloatField, Func, Q, QuerySet, Sum

from glisk.core.models import SystemState
from lifecycle.models import ImageJob, IpfsRecord, Token, TokenStatus

HISTOGRAMS_KEY = "metrics.histograms"
SETTLE = timedelta(minutes=2)
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

Buckets = list[tuple[str, float]]


class EpochSeconds(Func):
    """A duration in seconds (PostgreSQL's EXTRACT(EPOCH FROM interval))."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


def mint_to_reveal_seconds() -> EpochSeconds:
    """A revealed token's seconds from its mint's block to its reveal."""
    return EpochSeconds(
        ExpressionWrapper(F("revealed_at") - F("mint_event__block_timestamp"), output_field=DurationField())
    )


@dataclass(frozen=True)
class Source:
    key: str
    bounds: tuple[float, ...]

    def rows(self, since: datetime | None, until: datetime) -> QuerySet[Any]:
        """The rows finished in (since, until], each with its `seconds`."""
        kind, _, stage = self.key.partition(":")
        if kind == "stage":
            model = ImageJob if stage == "image" else IpfsRecord
            window = Q(finished_at__lte=until) & (Q(finished_at__gt=since) if since else Q())
            return model.objects.filter(window, duration_ms__isnull=False).annotate(
                seconds=F("duration_ms") / 1000.0
            )
        window = Q(revealed_at__lte=until) & (Q(revealed_at__gt=since) if since else Q())
        return Token.objects.filter(window, status=TokenStatus.REVEALED, mint_event__isnull=False).annotate(
            seconds=mint_to_reveal_seconds()
        )


SOURCES = (
    Source("stage:image", STAGE_BUCKETS),
    Source("stage:ipfs", STAGE_BUCKETS),
    Source("latency:", LATENCY_BUCKETS),
)


def _counts(rows: QuerySet[Any], bounds: tuple[float, ...]) -> tuple[list[int], float, int]:
    """Cumulative counts per bound, the sum and the count of `rows` by their `seconds`."""
    aggregates: dict[str, Any] = {
        f"le{n}": Count("pk", filter=Q(seconds__lte=bound)) for n, bound in enumerate(bounds)
    }
    got = rows.aggregate(total=Sum("seconds"), n=Count("pk"), **aggregates)
    return [int(got[f"le{n}"]) for n in range(len(bounds))], float(got["total"] or 0), int(got["n"])


def histograms_advance(*, settle: timedelta = SETTLE) -> dict[str, tuple[Buckets, float]]:
    """Advance every histogram to the database's `now() - settle`; returns each one's
    cumulative buckets (with `+Inf`) and sum, by key."""
    SystemState.objects.get_or_create(key=HISTOGRAMS_KEY, defaults={"value": {}})
    with transaction.atomic():
        row = SystemState.objects.select_for_update(skip_locked=True).filter(key=HISTOGRAMS_KEY).first()
        if row is None:  # another scrape is advancing them: serve them as they stand
            return _figures(SystemState.objects.get(key=HISTOGRAMS_KEY).value or {})
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            until = cursor.fetchone()[0] - settle
        state: dict[str, Any] = dict(row.value or {})
        for source in SOURCES:
            entry = state.get(source.key) or {"buckets": [0] * len(source.bounds), "sum": 0.0, "count": 0}
            since = datetime.fromisoformat(entry["watermark"]) if entry.get("watermark") else None
            if since is not None and since >= until:
                continue
            counts, total, n = _counts(source.rows(since, until), source.bounds)
            state[source.key] = {
                "buckets": [a + b for a, b in zip(entry["buckets"], counts, strict=True)],
                "sum": entry["sum"] + total,
                "count": entry["count"] + n,
                "watermark": until.isoformat(),
            }
        row.value = state
        row.save(update_fields=["value", "updated_at"])
    return _figures(state)


def _figures(state: dict[str, Any]) -> dict[str, tuple[Buckets, float]]:
    result: dict[str, tuple[Buckets, float]] = {}
    for source in SOURCES:
        entry = state.get(source.key) or {"buckets": [0] * len(source.bounds), "sum": 0.0, "count": 0}
        buckets: Buckets = [
            (str(float(b)), float(c)) for b, c in zip(source.bounds, entry["buckets"], strict=True)
        ]
        buckets.append(("+Inf", float(entry["count"])))
        result[source.key] = (buckets, float(entry["sum"]))
    return result
