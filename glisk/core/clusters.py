"""Which qclusters run, and when each was last seen.

Every django-q2 cluster saves its status (host, pid, workers, start time) to the shared database
cache every few seconds, for three seconds; a cluster that stops simply vanishes from it. That
live view is kept here in SystemState with each cluster's last-seen time, so that a cluster that
stopped is still listed (and alerted on) for RETENTION after it was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from glisk.core.state import state_get, state_get_for_update, state_set

CLUSTERS_KEY = "clusters.seen"
RETENTION = timedelta(minutes=30)
STOPPED_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class ClusterSeen:
    name: str  # host:pid of the cluster's main process: one per running cluster
    host: str
    pid: int
    workers: int
    started_at: datetime | None
    last_seen: datetime
    status: str

    @property
    def running(self) -> bool:
        return timezone.now() - self.last_seen < STOPPED_AFTER


def _live() -> list[dict[str, Any]]:
    from django_q.status import Stat

    now = timezone.now()
    live = []
    for stat in Stat.get_all():
        tob = getattr(stat, "tob", None)
        live.append(
            {
                "name": f"{stat.host}:{stat.pid}",
                "host": str(stat.host),
                "pid": int(stat.pid),
                "workers": len(getattr(stat, "workers", []) or []),
                "started_at": tob.isoformat() if tob else None,
                "last_seen": now.isoformat(),
                "status": str(getattr(stat, "status", "")),
            }
        )
    return live


def clusters_refresh() -> list[ClusterSeen]:
    """Merge the clusters running now into the record; drop those unseen for RETENTION."""
    live = _live()
    now = timezone.now()
    with transaction.atomic():
        known: dict[str, dict[str, Any]] = dict(state_get_for_update(key=CLUSTERS_KEY, default={}) or {})
        for entry in live:
            known[entry["name"]] = entry
        known = {
            name: entry
            for name, entry in known.items()
            if now - datetime.fromisoformat(entry["last_seen"]) < RETENTION
        }
        state_set(key=CLUSTERS_KEY, value=known)
    return _as_list(known)


def clusters_seen() -> list[ClusterSeen]:
    """The record as it stands (no refresh), newest first."""
    return _as_list(state_get(key=CLUSTERS_KEY, default={}) or {})


def _as_list(known: dict[str, dict[str, Any]]) -> list[ClusterSeen]:
    clusters = [
        ClusterSeen(
            name=name,
            host=entry["host"],
            pid=int(entry["pid"]),
            workers=int(entry.get("workers", 0)),
            started_at=datetime.fromisoformat(entry["started_at"]) if entry.get("started_at") else None,
            last_seen=datetime.fromisoformat(entry["last_seen"]),
            status=str(entry.get("status", "")),
        )
        for name, entry in known.items()
    ]
    return sorted(clusters, key=lambda c: c.last_seen, reverse=True)
