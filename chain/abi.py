"""The GliskNFT ABI (from the committed artifact) and the hashes the backend matches on."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
ARTIFACT_PATH = CONTRACTS_DIR / "GliskNFT.json"

BATCH_MINTED_SIGNATURE = "BatchMinted(address,address,uint256,uint256,uint256)"
TOKENS_REVEALED_SIGNATURE = "TokensRevealed(uint256[])"
KEEPER_ROLE = "0x" + keccak(text="KEEPER_ROLE").hex()
BATCH_MINTED_TOPIC = "0x" + keccak(text=BATCH_MINTED_SIGNATURE).hex()
TOKENS_REVEALED_TOPIC = "0x" + keccak(text=TOKENS_REVEALED_SIGNATURE).hex()
MAX_BATCH_SIZE = 50


@cache
def artifact() -> dict[str, Any]:
    return json.loads(ARTIFACT_PATH.read_text())


@cache
def wallet_signature_check_code() -> str:
    """Init code of WalletSignatureCheck (see its source), run as a deployless eth_call."""
    return str(json.loads((CONTRACTS_DIR / "WalletSignatureCheck.json").read_text())["bytecode"])


def abi() -> list[dict[str, Any]]:
    return artifact()["abi"]


def signature(item: dict[str, Any]) -> str:
    """`name(type,type…)` of an ABI function, event or error (tuples expanded)."""

    def type_of(param: dict[str, Any]) -> str:
        if param["type"].startswith("tuple"):
            inner = ",".join(type_of(c) for c in param["components"])
            return f"({inner}){param['type'][5:]}"
        return str(param["type"])

    return f"{item['name']}({','.join(type_of(p) for p in item.get('inputs', []))})"


def selector(item: dict[str, Any]) -> str:
    return "0x" + keccak(text=signature(item))[:4].hex()


def errors_by_selector() -> dict[str, dict[str, Any]]:
    return {selector(item): item for item in abi() if item["type"] == "error"}


def calldata(fn: str, types: list[str], args: list[Any]) -> str:
    """0x-hex call data of `fn(types…)` with `args`."""
    return _function_selector(fn, tuple(types)) + abi_encode(types, args).hex()


@cache
def _function_selector(fn: str, types: tuple[str, ...]) -> str:
    # Remembered: recovery encodes three calls per token, and the Keccak hash of the same few
    # signatures was a tenth of its time.
    return selector({"name": fn, "inputs": [{"type": t} for t in types]})


def reveal_tokens_calldata(token_ids: list[int], uris: list[str]) -> str:
    """Call data of `revealTokens(uint256[] tokenIds, string[] uris)`."""
    return calldata("revealTokens", ["uint256[]", "string[]"], [list(token_ids), list(uris)])
