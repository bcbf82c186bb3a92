"""Shared helpers for the benchmarks: a fresh database, machine facts, medians, JSON results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def setup_django(database_url: str | None = None) -> None:
    """Configure Django in this process (optionally against `database_url`)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glisk.settings")
    os.environ["APP_ENV"] = "test"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()


def fresh_database(name: str) -> str:
    """A new, migrated database on the embedded PostgreSQL; returns its URL."""
    sys.path.insert(0, str(ROOT))
    from django.conf import settings

    from glisk.embedded_db import reset_database

    if settings.configured:  # a run before this one: its sessions die with the dropped database
        from django.db import connections

        connections.close_all()
    url = reset_database(ROOT / "var", name)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "APP_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "glisk.settings",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return url


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **results}, indent=2, default=str))
    return path


@contextlib.contextmanager
def devnet_chain() -> Iterator[Any]:
    """A fresh anvil with GliskNFT deployed and the keeper funded (a `GliskChain`), then stopped."""
    from glisk.devtools.stack import Stack

    stack = Stack(var_dir=Path(tempfile.mkdtemp(prefix="glisk-bench-")), database_url="")
    try:
        stack.start_chain()
        yield stack.chain()
    finally:
        stack.stop()


@contextlib.contextmanager
def gunicorn(
    database_url: str,
    *,
    workers: int,
    worker_class: str = "sync",
    threads: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The web app under gunicorn on a free local port, on `database_url`; yields its base URL
    once /health answers, and stops it (its whole process group) afterwards."""
    import signal
    import socket

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "APP_ENV": "test",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "NETWORK": "DEVNET",
        "DJANGO_SETTINGS_MODULE": "glisk.settings",
        **(env or {}),
    }
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "glisk.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=process_env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
