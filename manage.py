#!/usr/bin/env python
"""Django's command-line utility for the GLISK backend."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glisk.settings")
    from django.core.management import execute_from_command_line

    from glisk.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # Bad settings: name every problem (never a value) and refuse to start.
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
