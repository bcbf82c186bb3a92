"""Reading settings from environment-like mappings: each variable parsed and checked on its own,
problems collected so that a refused start names them all at once; and the devnet's env file."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import environ

T = TypeVar("T")

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class EnvReader:
    """Reads one variable at a time, collecting problems instead of stopping at the first."""

    def __init__(self, values: Mapping[str, str]):
        self.env = environ.Env()
        self.env.ENVIRON = dict(values)  # django-environ reads from this mapping
        self.problems: list[str] = []

    def raw(self, name: str, default: str = "") -> str:
        # Straight from the mapping: django-environ would treat a leading "$" as a reference to
        # another variable, and a secret such as "$k3y…" would silently read as empty.
        return str(self.env.ENVIRON.get(name, default)).strip()

    def _parse(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        text = self.raw(name)
        if text == "":
            return default
        try:
            return parse(text)
        except (ValueError, InvalidOperation):
            self.problems.append(f"{name} must be {what}")
            return default

    def choice(self, name: str, default: str, choices: tuple[str, ...] | list[str]) -> str:
        value = self.raw(name, default)
        normalized = value.upper() if choices[0].isupper() else value.lower()
        if normalized not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}")
            return default
        return normalized

    def boolean(self, name: str, default: bool) -> bool:
        def parse(text: str) -> bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)

        return self._parse(name, default, parse, "a boolean (true/false)")

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self._parse(name, default, int, "an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problems.append(f"{name} must be {bound}")
            return default
        return value

    def number(self, name: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
        value = self._parse(name, default, float, "a number")
        if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            self.problems.append(f"{name} must be a finite number {bound}")
            return default
        return value

    def decimal(self, name: str, default: Decimal | None, minimum: Decimal) -> Decimal | None:
        value = self._parse(name, default, Decimal, "a number")
        if value is not None and (not value.is_finite() or value < minimum):
            self.problems.append(f"{name} must be a number >= {minimum}")
            return default
        return value

    def address(self, name: str, default: str = "") -> str:
        value = self.raw(name) or default  # empty, as `cp .env.example .env` leaves it: the default
        if value and not _ADDRESS.match(value):
            self.problems.append(f"{name} must be a 0x-prefixed 20-byte hex address")
            return ""
        return value

    def private_key(self, name: str) -> str:
        value = self.raw(name)
        if value and not _PRIVATE_KEY.match(value):
            self.problems.append(f"{name} must be a 32-byte hex private key")
            return ""
        if value and not value.startswith("0x"):
            value = "0x" + value
        return value

    def url(self, name: str, default: str = "") -> str:
        value = self.raw(name) or default  # empty, as `cp .env.example .env` leaves it: the default
        if value and not re.match(r"^https?://[^\s/]+", value):
            self.problems.append(f"{name} must be an http(s) URL")
            return default
        return value.rstrip("/")

    def text(self, name: str, default: str, max_length: int | None = None) -> str:
        value = self.raw(name, default)
        if max_length is not None and len(value) > max_length:
            self.problems.append(f"{name} must be at most {max_length} characters")
            return default
        return value

    def strings(self, name: str, default: list[str]) -> list[str]:
        text = self.raw(name)
        if text == "":
            return list(default)
        return [item.strip() for item in text.split(",") if item.strip()]


def read_env_file(path: Any) -> dict[str, str]:
    """Parse a ``KEY=value`` file (the devnet's) without touching ``os.environ``."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values
