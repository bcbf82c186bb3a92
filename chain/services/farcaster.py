"""Proof that a Farcaster account is the signer's: a Sign In With Farcaster message (EIP-4361
text) for our frontend's domain, still valid, naming the fid as `farcaster://fid/<fid>`, signed
by the fid's custody address as the IdRegistry on OP Mainnet records it; and the username the
Farcaster name registry gives that fid now.

(`siwe`, the EIP-4361 library, pins eth-account < 0.14 while web3 8 needs 0.14: the message is
parsed here, to the EIP's grammar.)
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.utils import timezone
from eth_utils import is_address, to_checksum_address

from authors.social import LinkRefused, LinkUnavailable
from chain.adapter import GliskChain
from chain.errors import ChainError
from chain.services.signatures import SignatureRefused, VerifierUnavailable, wallet_signature_verify

logger = logging.getLogger(__name__)

OP_MAINNET_CHAIN_ID = 10
CLOCK_SKEW = timedelta(minutes=5)
# An RFC 3986 authority of ASCII letters, digits, dots and hyphens, with an optional port (no
# look-alike characters: the domain is compared with ours).
_HEADER = re.compile(
    r"^(?:[a-zA-Z][a-zA-Z0-9+\-.]*://)?(?P<domain>[A-Za-z0-9.-]+(?::[0-9]{1,5})?) "
    r"wants you to sign in with your Ethereum account:$"
)
_FIELD = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]*): (?P<value>.*)$")
_FNAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
# EIP-4361's fields, in its order: the first five required, the others optional.
_FIELDS = ("URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time", "Not Before", "Request ID")
_REQUIRED = _FIELDS[:5]


@dataclass(frozen=True)
class SignInMessage:
    """The fields of an EIP-4361 message."""

    domain: str
    address: str
    statement: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str = ""
    resources: list[str] = field(default_factory=list)


def parse_sign_in_message(text: str) -> SignInMessage | None:
    """The message's fields, or None unless `text` follows EIP-4361's grammar."""
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) < 8:
        return None
    header = _HEADER.match(lines[0])
    address = lines[1]
    if header is None or not is_address(address) or address != to_checksum_address(address) or lines[2] != "":
        return None  # EIP-4361 wants the address in its EIP-55 form
    rest = lines[3:]
    statement = ""
    if rest and rest[0] == "":
        rest = rest[1:]  # no statement: the two blank lines of the grammar
    elif rest and not rest[0].startswith("URI: "):
        statement, rest = rest[0], rest[1:]
        if not rest or rest[0] != "":
            return None
        rest = rest[1:]
    values: dict[str, str] = {}
    resources: list[str] = []
    for n, line in enumerate(rest):
        if line == "Resources:":
            resources = [item[2:] for item in rest[n + 1 :]]
            if not all(item.startswith("- ") for item in rest[n + 1 :]):
                return None
            break
        match = _FIELD.match(line)
        if match is None or match.group("key") not in _FIELDS or match.group("key") in values:
            return None
        values[match.group("key")] = match.group("value")
    order = [key for key in _FIELDS if key in values]
    if list(values) != order or any(key not in values for key in _REQUIRED):
        return None
    if values["Version"] != "1" or not re.fullmatch(r"[0-9]{1,12}", values["Chain ID"]):
        return None
    try:
        return SignInMessage(
            domain=header.group("domain"),
            address=address,
            statement=statement,
            uri=values["URI"],
            version=values["Version"],
            chain_id=int(values["Chain ID"]),
            nonce=values["Nonce"],
            issued_at=_when(values["Issued At"]),
            expiration_time=_when(values["Expiration Time"]) if "Expiration Time" in values else None,
            not_before=_when(values["Not Before"]) if "Not Before" in values else None,
            request_id=values.get("Request ID", ""),
            resources=resources,
        )
    except ValueError:
        return None


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time has an offset")
    return moment


@dataclass(frozen=True)
class FarcasterProof:
    fid: int
    username: str
    custody_address: str
    signature_kind: str
    domain: str
    nonce: str
    digest: str  # SHA-256 of the message: each message links once

    def as_record(self) -> dict[str, object]:
        return {
            "fid": self.fid,
            "custody_address": self.custody_address,
            "signature_kind": self.signature_kind,
            "siwf_domain": self.domain,
            "siwf_nonce": self.nonce,
        }


@dataclass(frozen=True)
class FarcasterChecker:
    id_registry: GliskChain
    fname_registry_url: str
    frontend_host: str
    timeout: float
    max_age: timedelta

    @classmethod
    def from_settings(cls) -> FarcasterChecker:
        from django.conf import settings

        c = settings.GLISK
        if not c.farcaster_configured:
            raise LinkUnavailable(
                "linking Farcaster accounts is not configured here (FARCASTER_RPC_URL and FRONTEND_URL)"
            )
        registry = GliskChain(
            rpc_url=c.farcaster_rpc_url,
            contract_address=c.farcaster_id_registry,
            chain_id=OP_MAINNET_CHAIN_ID,
            timeout=c.social_timeout_seconds,
            budget=None,  # OP Mainnet's endpoint: not the Base account's compute units
        )
        return cls(
            id_registry=registry,
            fname_registry_url=c.fname_registry_url,
            frontend_host=urlsplit(c.frontend_url).netloc.lower(),
            timeout=c.social_timeout_seconds,
            max_age=timedelta(seconds=c.social_link_ttl_seconds),
        )

    def check(self, *, message: str, signature: str, fid: int, username: str) -> FarcasterProof:
        """The proof, or LinkRefused naming the first check that failed (LinkUnavailable when the
        IdRegistry's RPC or the name registry does not answer)."""
        siwf = parse_sign_in_message(message)
        if siwf is None:
            raise LinkRefused("farcaster_message is not a Sign In With Farcaster (EIP-4361) message")
        if siwf.domain.lower() != self.frontend_host:  # ASCII only (the grammar above)
            raise LinkRefused(f"the Farcaster message is for {siwf.domain[:100]}, not {self.frontend_host}")
        if siwf.chain_id != OP_MAINNET_CHAIN_ID:
            raise LinkRefused(f"the Farcaster message is for chain {siwf.chain_id}, not OP Mainnet (10)")
        self._check_time(siwf)
        wanted = f"farcaster://fid/{fid}"
        named = [r for r in siwf.resources if r.startswith("farcaster://fid/")]
        if named != [wanted]:
            others = [r for r in named if r != wanted]
            raise LinkRefused(
                f"the Farcaster message names {others[0][:60] if others else 'no fid'}, not (only) fid {fid}"
            )
        try:
            kind = wallet_signature_verify(
                chain=self.id_registry, wallet=siwf.address, message=message, signature=signature
            )
        except SignatureRefused:
            raise LinkRefused("farcaster_signature was not made by the message's address") from None
        except VerifierUnavailable:
            raise LinkUnavailable("the OP Mainnet RPC did not answer; retry shortly") from None
        custody = self._custody_of(fid)
        if custody.lower() != siwf.address.lower():
            raise LinkRefused(
                f"the signer {to_checksum_address(siwf.address)} is not the custody address of fid {fid}"
            )
        self._check_username(fid=fid, username=username)
        return FarcasterProof(
            fid=fid,
            username=username,
            custody_address=to_checksum_address(custody),
            signature_kind=str(kind),
            domain=siwf.domain,
            nonce=siwf.nonce[:100],
            digest=hashlib.sha256(message.encode()).hexdigest(),
        )

    def _check_time(self, siwf: SignInMessage) -> None:
        now = timezone.now()
        if siwf.expiration_time is not None and siwf.expiration_time <= now:
            raise LinkRefused("the Farcaster message has expired: sign in again")
        if siwf.not_before is not None and siwf.not_before > now + CLOCK_SKEW:
            raise LinkRefused("the Farcaster message is not valid yet")
        if siwf.issued_at > now + CLOCK_SKEW:
            raise LinkRefused("the Farcaster message is issued in the future")
        if siwf.issued_at < now - self.max_age:
            # Whatever expiry it names: a sign-in is fresh or it is not accepted.
            raise LinkRefused("the Farcaster message is too old: sign in again")

    def _custody_of(self, fid: int) -> str:
        try:
            (custody,) = self.id_registry.call("custodyOf", ["uint256"], [fid], ["address"])
        except ChainError as exc:
            logger.warning("farcaster.id_registry_failed", extra={"error_class": type(exc).__name__})
            raise LinkUnavailable(
                "the Farcaster IdRegistry could not be read at FARCASTER_RPC_URL (an OP Mainnet endpoint?)"
            ) from None
        except Exception as exc:  # an answer that does not decode: no registry at that address
            logger.warning("farcaster.id_registry_unreadable", extra={"error_class": type(exc).__name__})
            raise LinkUnavailable(
                "the Farcaster IdRegistry could not be read at FARCASTER_RPC_URL (an OP Mainnet endpoint?)"
            ) from None
        if not is_address(custody) or int(str(custody), 16) == 0:
            raise LinkRefused(f"fid {fid} is not registered")
        return str(custody)

    def _check_username(self, *, fid: int, username: str) -> None:
        name = username.lower()
        if not _FNAME.match(name):
            raise LinkRefused("username must be a Farcaster name (fname): 1-16 letters, digits or '-'")
        try:
            response = requests.get(
                f"{self.fname_registry_url}/transfers/current", params={"name": name}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            logger.warning("farcaster.fnames_unreachable", extra={"error_class": type(exc).__name__})
            raise LinkUnavailable("the Farcaster name registry did not answer; retry shortly") from None
        if response.status_code == 404:
            raise LinkRefused(f"the name {name} is not registered with Farcaster")
        if response.status_code != 200:
            raise LinkUnavailable("the Farcaster name registry did not answer; retry shortly")
        try:
            body = response.json()
            transfer = body["transfer"] if "transfer" in body else body["transfers"][-1]
            owner = int(transfer["to"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise LinkUnavailable("the Farcaster name registry answered something unreadable") from None
        if owner == 0:
            raise LinkRefused(f"the name {name} is not registered with Farcaster")
        if owner != fid:
            raise LinkRefused(f"the name {name} belongs to fid {owner}, not fid {fid}")
