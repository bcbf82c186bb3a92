"""Which qclusters run, and when each was last seen.

Every django-q2 cluster saves its status (host, pid, workers, start time) to the shared database
cache every few seconds, for three seconds; a cluster that stops simply vanishes from it. That
live view is kept here in SystemState with each cluster's last-seen time, so that a cluster that
stopped is still listed (and alerted on) for RETENTION after it was last seen.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from glisk.core.models import SystemState
from glisk.core.state import state_get, state_get_for_update, state_set

CLUSTERS_KEY = "clusters.seen"
TASKS_KEY = "clusters.tasks"  # tasks done and failed, by each cluster's monitor process (host:pid)
FLUSH_EVERY = 10.0
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
    tasks_done: int = 0
    tasks_failed: int = 0

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
                "monitor": int(getattr(stat, "monitor", 0) or 0),
                "started_at": tob.isoformat() if tob else None,
                "last_seen": now.isoformat(),
                "status": str(getattr(stat, "status", "")),
            }
        )
    return live


def clusters_refresh() -> list[ClusterSeen]:
    """Merge the clusters running now into the record; drop those unseen for RETENTION. A caller
    that finds another one refreshing (a concurrent scrape) gets the record as it stands."""
    live = _live()
    now = timezone.now()
    SystemState.objects.get_or_create(key=CLUSTERS_KEY, defaults={"value": {}})
    with transaction.atomic():
        row = SystemState.objects.select_for_update(skip_locked=True).filter(key=CLUSTERS_KEY).first()
        if row is None:
            return clusters_seen()
        known: dict[str, dict[str, Any]] = dict(row.value or {})
        for entry in live:
            known[entry["name"]] = entry
        known = {
            name: entry
            for name, entry in known.items()
            if now - datetime.fromisoformat(entry["last_seen"]) < RETENTION
        }
        row.value = known
        row.save(update_fields=["value", "updated_at"])
        # Then (always in this order) the task counts of clusters forgotten above.
        monitors = {f"{entry['host']}:{entry.get('monitor', 0)}" for entry in known.values()}
        tasks = dict(state_get_for_update(key=TASKS_KEY, default={}) or {})
        if set(tasks) - monitors:
            state_set(key=TASKS_KEY, value={k: v for k, v in tasks.items() if k in monitors})
    return _as_list(known)


def clusters_seen() -> list[ClusterSeen]:
    """The record as it stands (no refresh), newest first."""
    return _as_list(state_get(key=CLUSTERS_KEY, default={}) or {})


def _as_list(known: dict[str, dict[str, Any]]) -> list[ClusterSeen]:
    tasks: dict[str, dict[str, int]] = state_get(key=TASKS_KEY, default={}) or {}
    clusters = [
        ClusterSeen(
            name=name,
            host=entry["host"],
            pid=int(entry["pid"]),
            workers=int(entry.get("workers", 0)),
            started_at=datetime.fromisoformat(entry["started_at"]) if entry.get("started_at") else None,
            last_seen=datetime.fromisoformat(entry["last_seen"]),
            status=str(entry.get("status", "")),
            tasks_done=tasks.get(f"{entry['host']}:{entry.get('monitor', 0)}", {}).get("done", 0),
            tasks_failed=tasks.get(f"{entry['host']}:{entry.get('monitor', 0)}", {}).get("failed", 0),
        )
        for name, entry in known.items()
    ]
    return sorted(clusters, key=lambda c: c.last_seen, reverse=True)


_counted = {"done": 0, "failed": 0}
_lock = threading.Lock()
_timer: list[threading.Timer] = []


def task_executed(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """django-q2's post_execute, sent in each cluster's monitor process as it saves a result:
    counted here and added to SystemState by a timer FLUSH_EVERY seconds later (one small write
    per cluster and period, not one per task)."""
    with _lock:
        _counted["done" if task.get("success") else "failed"] += 1
        if not _timer:
            timer = threading.Timer(FLUSH_EVERY, _flush)
            timer.daemon = True
            _timer.append(timer)
            timer.start()


def _flush() -> None:
    from django.db import connection

    with _lock:
        counted = dict(_counted)
        _counted.update(done=0, failed=0)
        _timer.clear()
    key = f"{socket.gethostname()}:{os.getpid()}"
    try:
        with transaction.atomic():
            tasks: dict[str, dict[str, int]] = dict(state_get_for_update(key=TASKS_KEY, default={}) or {})
            entry = tasks.get(key, {"done": 0, "failed": 0})
            tasks[key] = {name: entry.get(name, 0) + counted[name] for name in ("done", "failed")}
            state_set(key=TASKS_KEY, value=tasks)
    except DatabaseError:
        with _lock:  # kept for the next flush
            for name, n in counted.items():
                _counted[name] += n
    finally:
        connection.close()  # this timer thread's own connection
