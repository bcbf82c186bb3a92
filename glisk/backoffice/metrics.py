"""`GET /metrics` in Prometheus format, computed from the database at scrape time.

Every process can answer a scrape and they all agree: the figures are the database's, not
in-memory counters of one worker. The histograms (stage call durations, mint → reveal) are kept
as cumulative bucket counts in SystemState and advanced at each scrape by the rows finished since
the last one (an indexed range, never the whole table); the clusters' last-seen times come from
django-q2's live status (glisk.core.clusters). The alert rules and dashboard that read these are
in deploy/.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Count, F, Func, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_q.models import OrmQ
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chain.models import RevealTransaction, WebhookDelivery
from chain.services.keeper import KEEPER_FUNDS_KEY
from chain.services.webhooks import PRUNED_KEY, UNSTORED_KEY
from glisk.backoffice.histograms import histograms_advance
from glisk.backoffice.selectors import backlog_eta
from glisk.core.budgets import budgets_status
from glisk.core.clusters import clusters_refresh
from glisk.core.models import SystemState
from glisk.core.state import state_get
from lifecycle.models import ACTIVE_STATUSES, ImageJob, IpfsRecord, Token, TokenStatus
from lifecycle.selectors import oldest_unrevealed_created_at, stuck_q


class GliskCollector:
    def collect(self) -> Iterator[Metric]:
        tokens = GaugeMetricFamily("glisk_tokens", "Tokens by status", labels=["status"])
        counts = dict(Token.objects.values_list("status").annotate(n=Count("pk")))
        for status in TokenStatus:
            tokens.add_metric([status.value], counts.get(status.value, 0))
        yield tokens

        attempts = CounterMetricFamily(
            "glisk_stage_attempts",
            "Stage attempts by outcome and error class",
            labels=["stage", "outcome", "error_class"],
        )
        duration = CounterMetricFamily(
            "glisk_stage_duration_seconds", "Time spent in provider calls", labels=["stage"]
        )
        finished = CounterMetricFamily(
            "glisk_stage_calls_finished", "Provider calls that finished", labels=["stage"]
        )
        for stage, model in (("image", ImageJob), ("ipfs", IpfsRecord)):
            rows = model.objects.values_list("outcome", "error_class").annotate(n=Count("pk"))
            for outcome, error_class, n in rows:
                attempts.add_metric([stage, outcome, error_class or ""], n)
            agg = model.objects.filter(duration_ms__isnull=False).aggregate(
                ms=Sum("duration_ms"), n=Count("pk")
            )
            duration.add_metric([stage], (agg["ms"] or 0) / 1000)
            finished.add_metric([stage], agg["n"] or 0)
        yield attempts
        yield duration
        yield finished

        failures = GaugeMetricFamily(
            "glisk_tokens_failed_by_stage", "Failed tokens by the stage that failed", labels=["stage"]
        )
        for stage, n in (
            Token.objects.filter(status=TokenStatus.FAILED)
            .values_list("failed_stage")
            .annotate(n=Count("pk"))
        ):
            failures.add_metric([stage or "unknown"], n)
        yield failures

        deliveries = CounterMetricFamily(
            "glisk_webhook_deliveries", "Webhook deliveries by outcome", labels=["outcome"]
        )
        # Stored plus pruned (the daily prune deletes old rows): a counter never goes down.
        pruned = dict(state_get(key=PRUNED_KEY, default={}) or {})
        # Refused deliveries past the hour's sample or a client's rate are counted, not stored.
        for outcome, n in (state_get(key=UNSTORED_KEY, default={}) or {}).items():
            pruned[outcome] = int(pruned.get(outcome, 0)) + int(n)
        stored = dict(WebhookDelivery.objects.values_list("outcome").annotate(n=Count("pk")))
        for outcome in sorted(set(stored) | set(pruned)):
            deliveries.add_metric([outcome], stored.get(outcome, 0) + int(pruned.get(outcome, 0)))
        yield deliveries

        reveals = CounterMetricFamily(
            "glisk_reveal_transactions", "Reveal transactions by status", labels=["status"]
        )
        for status, n in RevealTransaction.objects.values_list("status").annotate(n=Count("pk")):
            reveals.add_metric([status], n)
        yield reveals
        confirmed = RevealTransaction.objects.filter(status=RevealTransaction.Status.CONFIRMED)
        gas = confirmed.aggregate(g=Sum("gas_used"))["g"] or 0
        yield CounterMetricFamily(
            "glisk_reveal_gas_used", "Gas used by confirmed reveal transactions", value=gas
        )
        revealed_in_tx = confirmed.aggregate(n=Sum(Func(F("token_ids"), function="cardinality")))["n"] or 0
        yield CounterMetricFamily(
            "glisk_reveal_tokens", "Tokens in confirmed reveal transactions", value=revealed_in_tx
        )

        lag = GaugeMetricFamily(
            "glisk_watcher_lag_blocks",
            "Blocks between the chain head and the watcher cursor",
            labels=["cursor"],
        )
        for key, value in SystemState.objects.filter(key__startswith="watcher.cursor.").values_list(
            "key", "value"
        ):
            if isinstance(value, dict) and "block" in value and "head" in value:
                lag.add_metric([key], max(0, int(value["head"]) - int(value["block"])))
        yield lag
        yield from self._alerting()
        yield from self._budgets()

    def _budgets(self) -> Iterator[Metric]:
        """Each provider account's budget against its limit, and how long the backlog takes at
        the rate the limits admit."""
        limit = GaugeMetricFamily(
            "glisk_provider_budget_limit_per_second",
            "Each provider account's limit in units a second (0 = unlimited)",
            labels=["budget", "unit"],
        )
        available = GaugeMetricFamily(
            "glisk_provider_budget_available", "Units the budget holds now", labels=["budget"]
        )
        admitted = CounterMetricFamily(
            "glisk_provider_budget_admitted", "Units admitted through the budget", labels=["budget"]
        )
        throttled = CounterMetricFamily(
            "glisk_provider_throttled", "429 answers received from the provider", labels=["budget"]
        )
        paused = CounterMetricFamily(
            "glisk_provider_throttled_seconds",
            "Time the provider's 429s paused the account, as they announced it",
            labels=["budget"],
        )
        paused_now = GaugeMetricFamily(
            "glisk_provider_paused_seconds",
            "How much longer a 429 keeps the account paused",
            labels=["budget"],
        )
        waited = CounterMetricFamily(
            "glisk_provider_budget_waited_seconds", "Time requests waited for their turn", labels=["budget"]
        )
        for b in budgets_status():
            limit.add_metric([b.name, b.unit], b.limit.rate)
            available.add_metric([b.name], b.available)
            admitted.add_metric([b.name], b.admitted)
            throttled.add_metric([b.name], b.throttled)
            paused.add_metric([b.name], b.throttled_seconds)
            paused_now.add_metric([b.name], b.paused_for)
            waited.add_metric([b.name], b.waited_seconds)
        yield from (limit, available, admitted, throttled, paused, paused_now, waited)
        eta = GaugeMetricFamily(
            "glisk_backlog_eta_seconds",
            "How long a stage's backlog takes at the rate its provider's limit admits (0 = unlimited)",
            labels=["stage"],
        )
        for stage, seconds in backlog_eta().items():
            eta.add_metric([stage], seconds)
        yield eta

    def _alerting(self) -> Iterator[Metric]:
        now = timezone.now()
        stuck = GaugeMetricFamily(
            "glisk_tokens_stuck",
            "Tokens whose lease expired or whose stage is older than 15 minutes, by status",
            labels=["stage"],
        )
        counts = dict(Token.objects.filter(stuck_q(now)).values_list("status").annotate(n=Count("pk")))
        for status in sorted(ACTIVE_STATUSES):
            stuck.add_metric([status], counts.get(status, 0))
        yield stuck

        oldest = oldest_unrevealed_created_at()
        yield GaugeMetricFamily(
            "glisk_oldest_unrevealed_age_seconds",
            "Age of the oldest token neither revealed nor failed (0 when none)",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "glisk_queue_depth", "Tasks waiting in the django-q2 queue", value=OrmQ.objects.count()
        )

        clusters = clusters_refresh()
        running = GaugeMetricFamily(
            "glisk_clusters_running", "qclusters reporting now", value=sum(c.running for c in clusters)
        )
        yield running
        seen = GaugeMetricFamily(
            "glisk_cluster_last_seen_timestamp_seconds",
            "When each qcluster (host:pid) last reported; kept 30 minutes after it stops",
            labels=["cluster", "host"],
        )
        workers = GaugeMetricFamily(
            "glisk_cluster_workers", "Workers of each running qcluster", labels=["cluster", "host"]
        )
        for cluster in clusters:
            seen.add_metric([cluster.name, cluster.host], cluster.last_seen.timestamp())
            if cluster.running:
                workers.add_metric([cluster.name, cluster.host], cluster.workers)
        yield seen
        yield workers

        pending = RevealTransaction.objects.filter(status__in=RevealTransaction.ACTIVE)
        first = pending.aggregate(t=Min("created_at"), n=Count("pk"))
        yield GaugeMetricFamily(
            "glisk_reveal_transactions_pending",
            "Reveal transactions signed or sent, not yet resolved",
            value=first["n"],
        )
        yield GaugeMetricFamily(
            "glisk_reveal_pending_age_seconds",
            "Age of the oldest reveal transaction in flight (0 when none)",
            value=(now - first["t"]).total_seconds() if first["t"] else 0.0,
        )

        funds = state_get(key=KEEPER_FUNDS_KEY)
        if isinstance(funds, dict):
            yield GaugeMetricFamily(
                "glisk_keeper_balance_wei",
                "The keeper's balance when last checked",
                value=float(funds["balance_wei"]),
            )
            yield GaugeMetricFamily(
                "glisk_keeper_reveals_affordable",
                "Reveal transactions the keeper's balance pays for at the current fee and typical gas",
                value=float(funds["reveals_affordable"]),
            )
            yield GaugeMetricFamily(
                "glisk_keeper_funds_checked_timestamp_seconds",
                "When the keeper last read its balance and the fee",
                value=datetime.fromisoformat(funds["at"]).timestamp(),
            )

        histograms = histograms_advance()
        stage_calls = HistogramMetricFamily(
            "glisk_stage_call_seconds",
            "Duration of provider calls (one attempt: a generation, a pin), by stage",
            labels=["stage"],
        )
        for stage in ("image", "ipfs"):
            buckets, total = histograms[f"stage:{stage}"]
            stage_calls.add_metric([stage], buckets=buckets, sum_value=total)
        yield stage_calls
        latency = HistogramMetricFamily(
            "glisk_mint_to_reveal_seconds", "From the mint's block to the token's reveal on chain"
        )
        buckets, total = histograms["latency:"]
        latency.add_metric([], buckets=buckets, sum_value=total)
        yield latency


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The figures, to anyone when METRICS_TOKEN is unset, else to `Authorization: Bearer <it>`."""
    token = settings.GLISK.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GliskCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
