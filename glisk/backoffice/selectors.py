"""The dashboard's figures: reads across every app, for operators only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Aggregate, Count, FloatField, Max, Min
from django.db.models.functions import TruncDay, TruncHour, TruncMinute
from django.utils import timezone
from django_q.models import OrmQ, Success
from eth_account import Account

from chain.adapter import GliskChain
from chain.errors import ChainError
from chain.models import RevealTransaction, WebhookDelivery
from chain.services.guard import wrong_chain_problem
from chain.services.watcher import cursor_key
from glisk.core.budgets import PINATA, REPLICATE_CREATE, budget_limit
from glisk.core.state import state_get
from glisk.core.tasks import HEARTBEAT_KEY
from lifecycle.models import Token, TokenStatus
from lifecycle.selectors import oldest_unrevealed_created_at, stuck_q

CLUSTER_SEEN_WITHIN = timedelta(minutes=3)


@dataclass
class Dashboard:
    counts: dict[str, int]
    revealed_per_hour: list[tuple[datetime, int]]
    failed: int
    stuck: int
    oldest_unrevealed_age: timedelta | None
    last_webhook_at: datetime | None
    watcher_block: int | None
    chain_head: int | None
    keeper_address: str
    keeper_balance_wei: int | None
    pending_reveal: Any
    queue_depth: int
    cluster_last_seen: datetime | None
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def watcher_lag(self) -> int | None:
        if self.watcher_block is None or self.chain_head is None:
            return None
        return max(0, self.chain_head - self.watcher_block)

    @property
    def cluster_alive(self) -> bool:
        return (
            self.cluster_last_seen is not None
            and timezone.now() - self.cluster_last_seen < CLUSTER_SEEN_WITHIN
        )


# The reveal chart's time ranges: (span, one bar, how many bars, its SQL truncation).
RANGES: dict[str, tuple[timedelta, int, Any]] = {
    "1h": (timedelta(minutes=1), 60, TruncMinute),
    "24h": (timedelta(hours=1), 24, TruncHour),
    "7d": (timedelta(days=1), 7, TruncDay),
}


def dashboard_get(*, now: datetime | None = None, with_chain: bool = True, span: str = "24h") -> Dashboard:
    """Everything the admin dashboard shows; chain figures are None when the node does not answer.
    `span` (1h, 24h, 7d) is the reveal chart's range, in bars of a minute, an hour or a day (UTC)."""
    now = now or timezone.now()
    counts = {s.value: 0 for s in TokenStatus}
    counts.update(dict(Token.objects.values_list("status").annotate(n=Count("pk"))))

    step, bars, trunc = RANGES.get(span, RANGES["24h"])
    start = trunc("revealed_at")
    first_bar = now - step * (bars - 1)
    since = first_bar.replace(second=0, microsecond=0)
    if step >= timedelta(hours=1):
        since = since.replace(minute=0)
    if step >= timedelta(days=1):
        since = since.replace(hour=0)
    per_hour = dict(
        Token.objects.filter(status=TokenStatus.REVEALED, revealed_at__gte=since)
        .annotate(hour=start)
        .values_list("hour")
        .annotate(n=Count("pk"))
    )
    hours = [since + step * i for i in range(bars)]
    oldest = oldest_unrevealed_created_at()
    # Only verified deliveries: junk from anyone must not hide an Alchemy outage.
    last_webhook = WebhookDelivery.objects.filter(signature_valid=True).aggregate(last=Max("received_at"))[
        "last"
    ]

    errors: list[str] = []
    wrong_chain = wrong_chain_problem()
    if wrong_chain:
        errors.append(wrong_chain)
    watcher_block = head = balance = None
    keeper_address = ""
    config = settings.GLISK
    if config.keeper_private_key:
        keeper_address = Account.from_key(config.keeper_private_key).address
    if config.rpc_url and config.contract_address:
        chain = GliskChain.from_settings()
        cursor = state_get(key=cursor_key(chain), default={}) or {}
        watcher_block = cursor.get("block")
        if with_chain:
            try:
                head = chain.block_number()
                if keeper_address:
                    balance = chain.balance(keeper_address)
            except ChainError as exc:
                errors.append(f"chain: {exc}")
    heartbeat = state_get(key=HEARTBEAT_KEY, default={}) or {}
    seen = [Success.objects.aggregate(last=Max("stopped"))["last"]]
    if heartbeat.get("at"):
        seen.append(datetime.fromisoformat(heartbeat["at"]))
    seen_at = max((s for s in seen if s is not None), default=None)
    return Dashboard(
        counts=counts,
        revealed_per_hour=[(h, per_hour.get(h, 0)) for h in hours],
        failed=counts[TokenStatus.FAILED],
        stuck=Token.objects.filter(stuck_q(now)).count(),
        oldest_unrevealed_age=(now - oldest) if oldest else None,
        last_webhook_at=last_webhook,
        watcher_block=watcher_block,
        chain_head=head,
        keeper_address=keeper_address,
        keeper_balance_wei=balance,
        pending_reveal=RevealTransaction.objects.filter(status__in=RevealTransaction.ACTIVE).first(),
        queue_depth=OrmQ.objects.count(),
        cluster_last_seen=seen_at,
        errors=errors,
    )


@dataclass(frozen=True)
class ErrorGroup:
    stage: str
    error_class: str
    attempts: int
    tokens: int
    first_seen: datetime
    last_seen: datetime


def error_groups(*, since: datetime | None = None) -> list[ErrorGroup]:
    """Failed provider attempts grouped by stage and error class (most frequent first), with how
    many tokens they hit and when they were first and last seen."""
    from lifecycle.models import AttemptOutcome, ImageJob, IpfsRecord

    groups: list[ErrorGroup] = []
    for stage, model in (("image", ImageJob), ("ipfs", IpfsRecord)):
        rows = model.objects.exclude(outcome__in=[AttemptOutcome.STARTED, AttemptOutcome.SUCCEEDED])
        if since is not None:
            rows = rows.filter(created_at__gte=since)
        for row in rows.values("error_class").annotate(
            attempts=Count("pk"),
            tokens=Count("token", distinct=True),
            first=Min("created_at"),
            last=Max("created_at"),
        ):
            groups.append(
                ErrorGroup(
                    stage=stage,
                    error_class=row["error_class"] or "unknown",
                    attempts=row["attempts"],
                    tokens=row["tokens"],
                    first_seen=row["first"],
                    last_seen=row["last"],
                )
            )
    reveals = RevealTransaction.objects.filter(status=RevealTransaction.Status.FAILED)
    if since is not None:
        reveals = reveals.filter(created_at__gte=since)
    for error, n, first, last in reveals.values_list("error").annotate(
        n=Count("pk"), first=Min("created_at"), last=Max("created_at")
    ):
        groups.append(
            ErrorGroup(
                stage="reveal",
                error_class=(error or "unknown")[:60],
                attempts=n,
                tokens=0,
                first_seen=first,
                last_seen=last,
            )
        )
    return sorted(groups, key=lambda g: (-g.attempts, g.stage, g.error_class))


class Percentile(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class StageActivity:
    stage: str
    done: int  # attempts that succeeded (image, ipfs) or tokens revealed
    failed: int
    p50_seconds: float | None
    p95_seconds: float | None


def stage_activity(
    *, window: timedelta = timedelta(hours=1), now: datetime | None = None
) -> list[StageActivity]:
    """Per stage over the last `window`: what finished, what failed, and how long it took (a
    provider call for image and IPFS; mint → reveal for the reveal stage)."""
    from django.db.models import Q

    from glisk.backoffice.histograms import mint_to_reveal_seconds
    from lifecycle.models import AttemptOutcome, ImageJob, IpfsRecord

    now = now or timezone.now()
    since = now - window
    rows: list[StageActivity] = []
    for stage, model in (("image", ImageJob), ("ipfs", IpfsRecord)):
        got = model.objects.filter(finished_at__gte=since).aggregate(
            done=Count("pk", filter=Q(outcome=AttemptOutcome.SUCCEEDED)),
            failed=Count("pk", filter=~Q(outcome__in=[AttemptOutcome.SUCCEEDED, AttemptOutcome.STARTED])),
            p50=Percentile("duration_ms", 0.5, filter=Q(outcome=AttemptOutcome.SUCCEEDED)),
            p95=Percentile("duration_ms", 0.95, filter=Q(outcome=AttemptOutcome.SUCCEEDED)),
        )
        rows.append(
            StageActivity(
                stage=stage,
                done=got["done"],
                failed=got["failed"],
                p50_seconds=got["p50"] / 1000 if got["p50"] is not None else None,
                p95_seconds=got["p95"] / 1000 if got["p95"] is not None else None,
            )
        )
    latency = mint_to_reveal_seconds()
    got = Token.objects.filter(status=TokenStatus.REVEALED, revealed_at__gte=since).aggregate(
        done=Count("pk"),
        p50=Percentile(latency, 0.5, filter=Q(mint_event__isnull=False)),
        p95=Percentile(latency, 0.95, filter=Q(mint_event__isnull=False)),
    )
    failed = Token.objects.filter(
        status=TokenStatus.FAILED, failed_stage=TokenStatus.READY, status_changed_at__gte=since
    )
    rows.append(
        StageActivity(
            stage="reveal",
            done=got["done"],
            failed=failed.count(),
            p50_seconds=got["p50"],
            p95_seconds=got["p95"],
        )
    )
    return rows


def backlog_eta() -> dict[str, float]:
    """Seconds each rationed stage needs for its backlog at the rate its provider's limit admits
    (0 when the provider is unlimited): images at one Replicate create a token, pins at two
    Pinata uploads a batch of WORKER_BATCH_SIZE."""
    config = settings.GLISK
    waiting = dict(
        Token.objects.filter(status__in=[TokenStatus.DETECTED, TokenStatus.GENERATING, TokenStatus.UPLOADING])
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    images = waiting.get(TokenStatus.DETECTED, 0) + waiting.get(TokenStatus.GENERATING, 0)
    pins = images + waiting.get(TokenStatus.UPLOADING, 0)  # every image still to make is a pin too
    eta = {"image": 0.0, "ipfs": 0.0}
    create = budget_limit(REPLICATE_CREATE)
    if config.image_provider == "replicate" and not create.unlimited:
        eta["image"] = images / create.rate
    upload = budget_limit(PINATA)
    if config.ipfs_provider == "pinata" and not upload.unlimited:
        eta["ipfs"] = pins / (upload.rate / 2 * config.worker_batch_size)
    return eta
