"""django-q2 tasks of the pipeline. Thin: each calls one service and is safe to run twice."""

from __future__ import annotations

import os
import uuid
from typing import Any

from glisk.core.machine import machine_name
from glisk.core.stages import stage_started
from lifecycle.services.stages import image_stage_run, ipfs_stage_run
from lifecycle.services.tokens import token_leases_release_dead


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


CARRY_ON_SECONDS = 30.0


def image_stage() -> dict[str, Any]:
    stage_started(stage="image")
    worker = worker_id()
    report = image_stage_run(worker_id=worker)
    result = vars(report)
    if report.succeeded:
        # The tokens it just handed on are due in the IPFS stage now: this worker pins them
        # at once instead of waiting for the queued IPFS task to reach a worker (a poll and a
        # dispatch later). Claims are the same skip-locked ones, so the two never share a token.
        carried = ipfs_stage_run(worker_id=worker, budget_seconds=CARRY_ON_SECONDS)
        result["carried_to_ipfs"] = carried.succeeded
    return result


def ipfs_stage() -> dict[str, Any]:
    stage_started(stage="ipfs")
    report = ipfs_stage_run(worker_id=worker_id())
    return vars(report)
