"""The sweeper: the safety net behind the nudges."""

from __future__ import annotations

import logging
import socket

from django.utils import timezone

from glisk.core.stages import STAGES, stage_nudge, stage_pending
from glisk.core.state import state_set

logger = logging.getLogger(__name__)


def startup_sweep() -> dict[str, int]:
    return sweep(startup=True)


HEARTBEAT_KEY = "cluster.heartbeat"


def sweep(startup: bool = False) -> dict[str, int]:
    """Re-nudge every stage that has work (crashes, expired leases, backoffs); beat the heart.
    `startup` (a cluster starting): nudge past the debounce, since the task a flag stands for may
    have been taken by a cluster that died."""
    counts = {stage: stage_pending(stage=stage) for stage in STAGES}
    for stage, count in counts.items():
        if count:
            stage_nudge(stage=stage, force=startup)
    state_set(key=HEARTBEAT_KEY, value={"at": timezone.now().isoformat(), "host": socket.gethostname()})
    logger.info("sweeper.ran", extra=counts)
    return counts
