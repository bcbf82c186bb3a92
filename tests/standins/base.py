"""The stand-ins' base lives with the development tools (the devnet runs some stand-ins too)."""

from glisk.devtools.standins.base import QuietServer, StandInServer, read_body, send_json

__all__ = ["QuietServer", "StandInServer", "read_body", "send_json"]
