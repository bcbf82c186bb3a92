"""django-q2 tasks of the pipeline. Thin: each calls one service and is safe to run twice."""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from glisk.core.machine import machine_name
from glisk.core.stages import stage_started, stage_waiting
from lifecycle.services.stages import image_stage_run, ipfs_stage_run
from lifecycle.services.stages.runner import YIELD_AFTER_SECONDS, YIELD_TO
from lifecycle.services.tokens import token_leases_release_dead

logger = logging.getLogger(__name__)


def worker_id() -> str:
    """Unique per task run: machine (see machine_name), process, and a random suffix."""
    return f"{machine_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def release_dead_worker_leases() -> dict[str, int]:
    """Run by a cluster as it starts, on its own machine (see token_leases_release_dead)."""
    return token_leases_release_dead(host=machine_name(), alive=process_alive)


IMAGE_BUDGET_SECONDS = 120.0
CARRY_ON_SECONDS = 30.0


def image_stage() -> dict[str, Any]:
    stage_started(stage="image")
    worker = worker_id()
    started = time.monotonic()
    carried = 0

    def carry_on(*, between_batches: bool) -> None:
        # Tokens handed on are due in the IPFS stage now: this worker pins them at once instead of
        # waiting for the queued IPFS task to reach a worker (every worker may be busy generating
        # through a mint-out, and then nothing would be ready for the keeper until the last image
        # is made). Claims are the same skip-locked ones, so the two never share a token, and the
        # queued task takes what is left. Between image batches: one IPFS batch, never waiting
        # for tokens backing off; after the last one, up to CARRY_ON_SECONDS of IPFS work. Not
        # while the keeper waits for a worker (the stage runner yields to it), and within what
        # is left of the task's budget.
        nonlocal carried
        budget = min(CARRY_ON_SECONDS, IMAGE_BUDGET_SECONDS - (time.monotonic() - started))
        if budget <= 1 or stage_waiting(stage=YIELD_TO, longer_than=YIELD_AFTER_SECONDS):
            return
        try:
            carried += ipfs_stage_run(
                worker_id=worker,
                budget_seconds=budget,
                max_batches=1 if between_batches else None,
                wait_for_backoff=not between_batches,
            ).succeeded
        except Exception:  # the image work is committed; the queued IPFS task does the rest
            logger.exception("stage.carry_on_failed")

    report = image_stage_run(
        worker_id=worker,
        budget_seconds=IMAGE_BUDGET_SECONDS,
        after_batch=lambda: carry_on(between_batches=True),
    )
    if report.succeeded:
        carry_on(between_batches=False)
    result = vars(report)
    result["carried_to_ipfs"] = carried
    return result


def ipfs_stage() -> dict[str, Any]:
    stage_started(stage="ipfs")
    report = ipfs_stage_run(worker_id=worker_id())
    return vars(report)
