"""`manage.py pipeline_audit`: the demo's end-of-run audit, on whatever the database and chain hold.

Prints one JSON object: the token counts, the content checked, the problems found, and the stage
work per machine (which containers did the generating and pinning). Exits 1 when there is a
problem, so a script can rely on it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chain.adapter import GliskChain
from glisk.backoffice.audit import pipeline_audit, stage_work_by_machine


class Command(BaseCommand):
    help = "Audit every minted token against the chain (and an IPFS gateway); print a JSON summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--gateway", default="", help="an IPFS gateway URL: check metadata and image bytes"
        )
        parser.add_argument("--content-sample", type=int, default=None, help="check the content of N tokens")
        parser.add_argument(
            "--allow-unfinished", action="store_true", help="tokens still on their way are not problems"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = pipeline_audit(
            chain=GliskChain.from_settings(),
            gateway_url=options["gateway"].rstrip("/") or None,
            require_done=not options["allow_unfinished"],
            content_sample=options["content_sample"],
        )
        summary = {
            "on_chain": result.on_chain,
            "revealed": result.revealed,
            "failed": result.failed,
            "unfinished": result.unfinished,
            "checked_content": result.checked_content,
            "problems": result.problems,
            "stage_work": {
                machine: dict(stages) for machine, stages in sorted(stage_work_by_machine().items())
            },
        }
        self.stdout.write(json.dumps(summary, indent=2))
        if result.problems:
            sys.exit(1)
