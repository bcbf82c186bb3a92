"""`manage.py prune_webhooks [--dry-run] [--days OUTCOME=N …]`: delete old webhook deliveries."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain.models import WebhookDelivery
from chain.services.webhooks import RETENTION_DAYS, webhook_deliveries_prune


class Command(BaseCommand):
    help = (
        "Delete webhook deliveries older than their outcome's retention "
        f"({', '.join(f'{k} {v} days' for k, v in RETENTION_DAYS.items())}). Runs daily in the clusters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
        parser.add_argument(
            "--days", nargs="+", default=[], metavar="OUTCOME=N", help="another retention for an outcome"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        retention: dict[str, int] = {str(outcome): days for outcome, days in RETENTION_DAYS.items()}
        for item in options["days"]:
            outcome, _, days = item.partition("=")
            if outcome not in WebhookDelivery.Outcome.values or not days.isdigit():
                raise CommandError(
                    f"--days takes OUTCOME=N with OUTCOME one of {WebhookDelivery.Outcome.values}"
                )
            retention[outcome] = int(days)
        deleted = webhook_deliveries_prune(retention_days=retention, dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {sum(deleted.values())} deliveries: " + ", ".join(f"{k} {v}" for k, v in deleted.items())
        )
