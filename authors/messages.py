"""The texts an author signs to change their prompt or link an account.

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

* The account links have the same two forms: the frontend's static `Link X account for wallet:
  <address>` (or `Link Farcaster account …`), replayable, and a bound one naming the wallet,
  the network, the chain, a nonce and an expiry:

      GLISK account link
      Wallet: 0xAbC…
      Network: X
      Chain ID: 8453
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
LINK_TITLE = "GLISK account link"
_LINK_FIELDS = ("Wallet", "Network", "Chain ID", "Nonce", "Expires At")
# The network names the link messages use (static and bound), by `SocialLink.Network` value.
LINK_NETWORKS = {"x": "X", "farcaster": "Farcaster"}
_CHAIN_ID = re.compile(r"[0-9]{1,18}")
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
    values = (wallet, str(chain_id), prompt_sha256, nonce, _stamp(expires_at))
    return "\n".join(
        [BOUND_TITLE, *(f"{name}: {value}" for name, value in zip(_FIELDS, values, strict=True))]
    )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fields(text: str, *, title: str, names: tuple[str, ...]) -> dict[str, str] | None:
    """`name: value` per line after `title`, exactly `names` in order; None if `text` differs."""
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) != len(names) + 1 or lines[0] != title:
        return None
    values: dict[str, str] = {}
    for name, line in zip(names, lines[1:], strict=True):
        match = _LINE.match(line)
        if match is None or match.group(1) != name:
            return None
        values[name] = match.group(2)
    return values


def _chain_and_expiry(values: dict[str, str]) -> tuple[int, datetime] | None:
    try:
        expires = datetime.strptime(values["Expires At"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    if not _CHAIN_ID.fullmatch(values["Chain ID"]):
        return None
    return int(values["Chain ID"]), expires


def parse_bound_message(text: str) -> BoundMessage | None:
    """The fields of a bound message, or None if `text` is not one (exactly, line by line)."""
    values = _fields(text, title=BOUND_TITLE, names=_FIELDS)
    parsed = values and _chain_and_expiry(values)
    if not values or not parsed:
        return None
    return BoundMessage(
        wallet=values["Wallet"],
        chain_id=parsed[0],
        prompt_sha256=values["Prompt SHA-256"].lower(),
        nonce=values["Nonce"],
        expires_at=parsed[1],
    )


def static_link_message(*, wallet: str, network: str) -> str:
    return f"Link {LINK_NETWORKS[network]} account for wallet: {wallet}"


@dataclass(frozen=True)
class BoundLink:
    wallet: str
    network: str  # a `SocialLink.Network` value, or "" for a network this service does not know
    chain_id: int
    nonce: str
    expires_at: datetime


def bound_link_message(*, wallet: str, network: str, chain_id: int, nonce: str, expires_at: datetime) -> str:
    values = (wallet, LINK_NETWORKS[network], str(chain_id), nonce, _stamp(expires_at))
    return "\n".join(
        [LINK_TITLE, *(f"{name}: {value}" for name, value in zip(_LINK_FIELDS, values, strict=True))]
    )


def parse_bound_link(text: str) -> BoundLink | None:
    """The fields of a bound link message, or None if `text` is not one."""
    values = _fields(text, title=LINK_TITLE, names=_LINK_FIELDS)
    parsed = values and _chain_and_expiry(values)
    if not values or not parsed:
        return None
    networks = {label: value for value, label in LINK_NETWORKS.items()}
    return BoundLink(
        wallet=values["Wallet"],
        network=networks.get(values["Network"], ""),
        chain_id=parsed[0],
        nonce=values["Nonce"],
        expires_at=parsed[1],
    )
