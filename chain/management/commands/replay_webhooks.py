"""`manage.py replay_webhooks (--failed | --ids 1 2 3)`: re-run stored deliveries."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain.models import WebhookDelivery
from chain.services.webhooks import WebhookRejected, webhook_delivery_replay


class Command(BaseCommand):
    help = "Re-run stored Alchemy deliveries through the same service (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument(
            "--failed",
            action="store_true",
            help="every delivery that was not processed (malformed, failed, never finished)",
        )
        group.add_argument("--ids", type=int, nargs="+", help="these delivery ids")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["ids"]:
            ids = list(options["ids"])
            unknown = set(ids) - set(WebhookDelivery.objects.filter(pk__in=ids).values_list("pk", flat=True))
            if unknown:
                raise CommandError(f"no such deliveries: {sorted(unknown)}")
        else:
            ids = list(
                WebhookDelivery.objects.filter(
                    outcome__in=[
                        WebhookDelivery.Outcome.MALFORMED,
                        WebhookDelivery.Outcome.FAILED,
                        WebhookDelivery.Outcome.RECEIVED,
                    ],
                    signature_valid=True,
                )
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        replayed = refused = new_tokens = 0
        for delivery_id in ids:
            try:
                summary = webhook_delivery_replay(delivery_id=delivery_id)
            except WebhookRejected as exc:
                refused += 1
                self.stderr.write(f"delivery {delivery_id}: {exc}")
                continue
            replayed += 1
            new_tokens += int(summary.get("tokens_new", 0) or 0)
        self.stdout.write(f"replayed: {replayed}  refused: {refused}  new tokens: {new_tokens}")
        sys.exit(0 if refused == 0 else 2)
