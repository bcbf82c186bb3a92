"""`manage.py recover_tokens [--limit N] [--dry-run]`: create tokens the database is missing."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chain.adapter import GliskChain
from chain.errors import ChainError
from chain.services.recovery import tokens_recover


class Command(BaseCommand):
    help = (
        "Compare nextTokenId() with the database and create the missing tokens. "
        "Exit 0: none missing; 2: some remain; 1: failure."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=None, help="recover at most N tokens")
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would be recovered, write nothing"
        )
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if limit is not None and limit < 1:
            self.stderr.write("--limit must be at least 1")
            sys.exit(1)
        tty = self.stdout.isatty()

        def progress(done: int, total: int) -> None:
            if tty and total:
                width = 30
                filled = int(width * done / total)
                self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
                self.stdout.flush()

        try:
            chain = GliskChain.from_settings()
            chain.check_chain_id()
            summary = tokens_recover(chain=chain, limit=limit, dry_run=options["dry_run"], progress=progress)
        except ChainError as exc:
            self.stderr.write(f"recover_tokens failed: {exc}")
            sys.exit(1)
        if tty:
            self.stdout.write("")
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict()))
        else:
            verb = "would recover" if summary.dry_run else "recovered"
            self.stdout.write(
                f"on chain: {summary.on_chain}  in database: {summary.in_database}  "
                f"missing: {summary.missing}\n"
                f"{verb}: {summary.recovered} ({summary.recovered_revealed} already revealed)  "
                f"already present: {summary.already_present}  errors: {summary.errors}  "
                f"remaining: {summary.remaining}"
            )
            for sample in summary.error_samples:
                self.stderr.write(f"  error {sample}")
        sys.exit(0 if summary.remaining == 0 else 2)
