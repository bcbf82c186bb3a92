"""django-q2 tasks of the pipeline. Thin: each calls one service and is safe to run twice."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from django.db.models import Q
from django.utils import timezone

from lifecycle.models import Token, TokenStatus
from lifecycle.nudge import stage_nudge, stage_started
from lifecycle.services.stages import image_stage_run, ipfs_stage_run

logger = logging.getLogger(__name__)


def worker_id() -> str:
    """Unique per task run: host, process, and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def image_stage() -> dict[str, Any]:
    stage_started(stage="image")
    report = image_stage_run(worker_id=worker_id())
    return vars(report)


def ipfs_stage() -> dict[str, Any]:
    stage_started(stage="ipfs")
    report = ipfs_stage_run(worker_id=worker_id())
    return vars(report)


def due_counts() -> dict[str, int]:
    """Tokens each stage could claim now (due, and not held by a live lease)."""
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    due = Token.objects.filter(free, next_attempt_at__lte=now)
    return {
        "image": due.filter(status__in=[TokenStatus.DETECTED, TokenStatus.GENERATING]).count(),
        "ipfs": due.filter(status=TokenStatus.UPLOADING).count(),
        "reveal": Token.objects.filter(status=TokenStatus.READY).count(),
    }


def sweep() -> dict[str, int]:
    """The safety net: re-nudge every stage that has due work (crashes, expired leases, backoffs)."""
    counts = due_counts()
    for stage, count in counts.items():
        if count:
            stage_nudge(stage=stage)
    from chain.models import RevealTransaction

    if (
        not counts["reveal"]
        and RevealTransaction.objects.filter(status__in=RevealTransaction.ACTIVE).exists()
    ):
        stage_nudge(stage="reveal")
    from chain.services.state import state_set
    from lifecycle.selectors import HEARTBEAT_KEY

    state_set(key=HEARTBEAT_KEY, value={"at": timezone.now().isoformat(), "host": socket.gethostname()})
    logger.info("sweeper.ran", extra=counts)
    return counts
