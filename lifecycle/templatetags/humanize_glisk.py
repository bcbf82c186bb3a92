from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """`3d 4h`, `2h 5m`, `42s`."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@register.filter
def eth(wei: int | Decimal | None) -> str:
    if wei is None:
        return ""
    return f"{Decimal(int(wei)) / Decimal(10**18):.6f}"
