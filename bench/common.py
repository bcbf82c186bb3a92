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
from dataclasses import dataclass
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
    statement_stats_on(url)
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
            # Like the stack's config: a poller comes back every 2 s, gunicorn's default
            # keep-alive is 2 s, and a close racing the next request resets it.
            "--keep-alive",
            "5",
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


# --- What a run cost: SQL statements (pg_stat_statements) and CPU time per process role ---------

ROLES = (  # a process's role, from its command line; the first match wins
    ("qcluster", "workers (qcluster)"),
    ("gunicorn", "web (gunicorn)"),
    ("runserver", "web (gunicorn)"),
    ("webhook_relay", "relay"),
    ("postgres", "PostgreSQL"),
    ("anvil", "anvil"),
    ("read_load.mjs", "load client (node)"),
    ("bench/", "the benchmark's own process"),  # its load, or the work it runs in-process
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(proc: Path, *, children: bool = True) -> float:
    """CPU seconds (user + system) of the process whose /proc entry is `proc`; with `children`,
    those of its reaped children too."""
    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11 : 15 if children else 13]) / CLOCK_TICKS


def cpu_by_role() -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) of every process on the machine with
    a role in ROLES, summed per role. The difference of two snapshots is what a run cost; a
    process that exits between them takes its share with it, so take the second one first."""
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            role = next((name for marker, name in ROLES if marker in command), None)
            if role is not None:
                totals[role] = totals.get(role, 0.0) + process_cpu(entry)
        except OSError:
            continue
    return totals


def statement_stats_on(url: str) -> None:
    """Make sure the embedded server loads pg_stat_statements (one restart the first time; the
    setting stays in var/postgres) and that database `url` has the extension."""
    import psycopg

    from glisk.embedded_db import restart

    with psycopg.connect(url, autocommit=True) as conn:
        loaded = "pg_stat_statements" in str(conn.execute("SHOW shared_preload_libraries").fetchone()[0])
        if not loaded:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    if not loaded:
        restart(ROOT / "var")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")


def statement_stats(url: str) -> list[dict[str, Any]]:
    """This database's statements since the last reset: text, calls, rows, milliseconds."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls, rows, total_exec_time FROM pg_stat_statements "
            "WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY total_exec_time DESC"
        ).fetchall()
    return [{"query": q, "calls": int(c), "rows": int(r), "ms": float(ms)} for q, c, r, ms in rows]


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
# PostgreSQL's own foreign-key check, run inside the server for each inserted row (history,
# attempt rows): pg_stat_statements lists it, but no client sent it.
FOREIGN_KEY_CHECK = "FOR KEY SHARE OF x"


def _sent(statement: dict[str, Any]) -> bool:
    return FOREIGN_KEY_CHECK not in statement["query"]


@dataclass
class Cost:
    """What a run cost per unit of work (a token): statements, database time, CPU per role."""

    units: int
    statements: list[dict[str, Any]]
    cpu: dict[str, float]
    unit: str = "token"

    @property
    def calls(self) -> int:
        """Statements our processes sent (the server's own foreign-key checks left out)."""
        return sum(s["calls"] for s in self.statements if _sent(s))

    @property
    def calls_without_transaction_control(self) -> int:
        return sum(
            s["calls"]
            for s in self.statements
            if _sent(s) and not s["query"].lstrip().upper().startswith(TRANSACTION_CONTROL)
        )

    @property
    def foreign_key_checks(self) -> int:
        return sum(s["calls"] for s in self.statements if not _sent(s))

    def summary(self) -> dict[str, Any]:
        per = max(1, self.units)
        return {
            "statements_per_token": self.calls / per,
            "statements_per_token_without_begin_commit": self.calls_without_transaction_control / per,
            "foreign_key_checks_per_token": self.foreign_key_checks / per,
            "database_ms_per_token": sum(s["ms"] for s in self.statements) / per,
            "cpu_ms_per_token": {role: seconds * 1000 / per for role, seconds in sorted(self.cpu.items())},
            "top_statements": [
                {**s, "query": " ".join(s["query"].split())[:160], "calls_per_token": s["calls"] / per}
                for s in self.statements[:12]
                if _sent(s)
            ],
        }

    def print(self) -> None:
        s = self.summary()
        print(
            f"  SQL: {s['statements_per_token']:.2f} statements per {self.unit} "
            f"({s['statements_per_token_without_begin_commit']:.2f} without BEGIN/COMMIT; the server's own "
            f"foreign-key checks, {s['foreign_key_checks_per_token']:.1f} per {self.unit}, not counted), "
            f"{s['database_ms_per_token']:.2f} ms of database execution per {self.unit}"
        )
        cpu = ", ".join(f"{role} {ms:.2f}" for role, ms in s["cpu_ms_per_token"].items())
        print(f"  CPU ms per {self.unit}: {cpu}")
        print(f"  statements by database time (calls per {self.unit}, ms in all):")
        for top in s["top_statements"][:8]:
            print(f"    {top['calls_per_token']:6.2f}  {top['ms']:8.0f} ms  {top['query'][:110]}")


@contextlib.contextmanager
def measured(url: str, units: int) -> Iterator[list[Cost]]:
    """Measure the statements and CPU of the block; yields a list that holds the `Cost` after it.
    The database must be one `fresh_database` made (it turns the statement statistics on)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    before = cpu_by_role()
    out: list[Cost] = []
    yield out
    after = cpu_by_role()
    cpu = {role: after.get(role, 0.0) - before.get(role, 0.0) for role in after}
    out.append(
        Cost(units=units, statements=statement_stats(url), cpu={r: v for r, v in cpu.items() if v > 0})
    )
