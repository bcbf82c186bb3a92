"""`GET /metrics` in Prometheus format, computed from the database at scrape time.

Every process can answer a scrape and they all agree: the figures are the database's, not
in-memory counters of one worker.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, F, Func, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chain.models import RevealTransaction, WebhookDelivery
from glisk.core.models import SystemState
from lifecycle.models import ImageJob, IpfsRecord, Token, TokenStatus


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
        for outcome, n in WebhookDelivery.objects.values_list("outcome").annotate(n=Count("pk")):
            deliveries.add_metric([outcome], n)
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
