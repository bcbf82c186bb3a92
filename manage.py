#!/usr/bin/env python
"""Django's command-line utility for the GLISK backend."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glisk.settings")
    from django.core.management import execute_from_command_line
    from django.db import InterfaceError, OperationalError

    from glisk.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # Bad settings: name every problem (never a value) and refuse to start.
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)
    except (OperationalError, InterfaceError) as exc:
        if _database_answers():
            raise  # the database is there: a timeout, a deadlock, … keep the whole story
        # One line, not a driver traceback: which variable to check, never its value.
        from django.conf import settings

        from glisk.core.database import database_problem

        where = (
            "DATABASE_URL" if settings.GLISK.database_url else "the embedded PostgreSQL under var/postgres"
        )
        sys.stderr.write(f"error: {database_problem(exc)}; check {where}\n")
        sys.exit(1)


def _database_answers() -> bool:
    from django.db import DatabaseError, connection

    try:
        connection.close()
        connection.ensure_connection()
    except DatabaseError:
        return False
    return True


if __name__ == "__main__":
    main()
