"""The texts an author signs to change their prompt.

* The static message the collection's web frontend signs today:
  `Update GLISK prompt for wallet: <checksummed address>`. It says nothing about the prompt or
  when, so a captured signature can set any prompt for that wallet again; it is accepted while
  AUTHOR_ACCEPT_STATIC_MESSAGE is on.
* The bound message, which cannot be replayed: it names the wallet, the chain, a SHA-256 of the
  exact prompt, a nonce the backend issued (used once) and an expiry, one field per line:

      GLISK prompt update
      Wallet: 0xAbC…
      Chain ID: 8453
      Prompt SHA-256: 9f86d0…
      Nonce: 3f1c…
      Expires At: 2026-12-01T05:00:00Z
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

STATIC_PREFIX = "Update GLISK prompt for wallet: "
BOUND_TITLE = "GLISK prompt update"
_FIELDS = ("Wallet", "Chain ID", "Prompt SHA-256", "Nonce", "Expires At")
_LINE = re.compile(r"^([A-Za-z0-9 \-]+): (.+)$")


def static_prompt_message(wallet: str) -> str:
    return f"{STATIC_PREFIX}{wallet}"


def prompt_sha256(prompt_text: str) -> str:
    return hashlib.sha256(prompt_text.encode()).hexdigest()


@dataclass(frozen=True)
class BoundMessage:
    wallet: str
    chain_id: int
    prompt_sha256: str
    nonce: str
    expires_at: datetime


def bound_prompt_message(
    *, wallet: str, chain_id: int, prompt_sha256: str, nonce: str, expires_at: datetime
) -> str:
    stamp = expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = (wallet, str(chain_id), prompt_sha256, nonce, stamp)
    return "\n".join(
        [BOUND_TITLE, *(f"{name}: {value}" for name, value in zip(_FIELDS, values, strict=True))]
    )


def parse_bound_message(text: str) -> BoundMessage | None:
    """The fields of a bound message, or None if `text` is not one (exactly, line by line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) != len(_FIELDS) + 1 or lines[0] != BOUND_TITLE:
        return None
    values: dict[str, str] = {}
    for name, line in zip(_FIELDS, lines[1:], strict=True):
        match = _LINE.match(line)
        if match is None or match.group(1) != name:
            return None
        values[name] = match.group(2)
    try:
        expires = datetime.strptime(values["Expires At"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        chain_id = int(values["Chain ID"])
    except ValueError:
        return None
    return BoundMessage(
        wallet=values["Wallet"],
        chain_id=chain_id,
        prompt_sha256=values["Prompt SHA-256"].lower(),
        nonce=values["Nonce"],
        expires_at=expires,
    )
