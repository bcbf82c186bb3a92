"""`manage.py webhook_relay`: deliver Alchemy-format webhooks for the devnet's blocks."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain.adapter import GliskChain
from chain.errors import ChainError
from glisk.devtools.relay import WebhookRelay


class Command(BaseCommand):
    help = "Watch the devnet and POST signed Alchemy Custom-webhook payloads to the app (devnet only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/webhooks/alchemy")
        parser.add_argument(
            "--from-block", type=int, default=None, help="first block to deliver (default: the chain head)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.GLISK
        if config.network != "DEVNET":
            raise CommandError("the relay stands in for Alchemy on the devnet only (NETWORK=DEVNET)")
        if not config.alchemy_webhook_secret or not config.contract_address:
            raise CommandError("no devnet settings: run `manage.py devnet` first")
        chain = GliskChain.from_settings()
        try:
            start = options["from_block"] if options["from_block"] is not None else chain.block_number() + 1
        except ChainError as exc:
            raise CommandError(f"the devnet is not answering: {exc}") from None
        relay = WebhookRelay(
            chain=chain, url=options["url"], secret=config.alchemy_webhook_secret, start_block=start
        )
        signal.signal(signal.SIGTERM, lambda *_: relay.stop())
        self.stdout.write(f"relaying blocks from {start} to {options['url']}")
        with contextlib.suppress(KeyboardInterrupt):
            relay.run()
        self.stdout.write(f"relay stopped: {relay.delivered} delivered, {relay.failed} given up")
