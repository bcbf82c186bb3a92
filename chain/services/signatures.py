"""Who signed a message: a wallet's `personal_sign` (EIP-191) signature, whatever kind of wallet
collectors use on Base.

* An externally owned account: the signer is recovered from the 65-byte signature, off chain.
* A deployed smart-contract wallet (ERC-1271) and a smart wallet not deployed yet (ERC-6492, as
  Coinbase Smart Wallet signs before its first transaction): one `eth_call` that runs
  WalletSignatureCheck as init code, which deploys the wallet inside the simulation if needed
  and asks it `isValidSignature(hash, signature)`.
"""

from __future__ import annotations

import enum
import logging

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from chain import abi
from chain.adapter import GliskChain
from chain.errors import ChainError, ContractRevert
from glisk.core.errors import ApplicationError

logger = logging.getLogger(__name__)

ERC6492_SUFFIX = bytes.fromhex("6492" * 16)


class SignatureKind(enum.StrEnum):
    EOA = "eoa"
    ERC1271 = "erc1271"
    ERC6492 = "erc6492"


class SignatureRefused(ApplicationError):
    """The signature is malformed, or the wallet did not sign the message."""

    status_code = 403
    error_type = "signature_refused"


class VerifierUnavailable(ApplicationError):
    """A contract wallet's signature could not be checked because the chain did not answer."""

    status_code = 503
    error_type = "verifier_unavailable"
    headers = {"Retry-After": "10"}


def personal_sign_hash(message: str) -> bytes:
    """The EIP-191 (version 0x45) hash that `personal_sign` signs."""
    body = message.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(body)).encode() + body)


def _signature_bytes(signature: str) -> bytes:
    text = signature.strip()
    if not text.startswith("0x") or len(text) < 4 or len(text) % 2:
        raise SignatureRefused("signature must be 0x-prefixed hex")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise SignatureRefused("signature must be 0x-prefixed hex") from None
    if len(raw) > 16384:
        raise SignatureRefused("signature is too long")
    return raw


def _recovered(message: str, raw: bytes) -> str | None:
    if len(raw) != 65:
        return None
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=raw))
    except Exception:
        return None


def wallet_signature_verify(*, chain: GliskChain | None, wallet: str, message: str, signature: str) -> str:
    """Return how `wallet` signed `message` (a `SignatureKind`), or raise `SignatureRefused`.

    Raises `VerifierUnavailable` when a contract wallet has to be asked and the chain does not
    answer (or no RPC is configured).
    """
    raw = _signature_bytes(signature)
    recovered = _recovered(message, raw)
    if recovered is not None and recovered.lower() == wallet.lower():
        return SignatureKind.EOA
    if chain is None:
        raise VerifierUnavailable("contract wallets cannot be checked: no RPC endpoint is configured")
    init = (
        abi.wallet_signature_check_code()
        + abi_encode(["address", "bytes32", "bytes"], [wallet, personal_sign_hash(message), raw]).hex()
    )
    try:
        answer = chain.call_deployless(init)
    except ContractRevert:
        answer = b""  # the wallet (or its factory) said no by reverting
    except ChainError as exc:
        # Not the wallet's answer (an RPC that is down, refuses our key or lacks eth_call):
        # say so, never "the signature does not match".
        logger.warning("signature.check_unavailable", extra={"error_class": type(exc).__name__})
        raise VerifierUnavailable(
            "the chain could not check this wallet's signature; retry shortly"
        ) from None
    if answer == b"\x01":
        return SignatureKind.ERC6492 if raw.endswith(ERC6492_SUFFIX) else SignatureKind.ERC1271
    raise SignatureRefused("the signature does not match this wallet")


def wallet_signature_verify_from_settings(*, wallet: str, message: str, signature: str) -> str:
    """`wallet_signature_verify` on the configured chain RPC."""
    from django.conf import settings

    chain = GliskChain.from_settings() if settings.GLISK.rpc_url else None
    return wallet_signature_verify(chain=chain, wallet=wallet, message=message, signature=signature)
