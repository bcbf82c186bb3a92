"""The committed artifacts match their sources, and the ABI matches the hashes in docs/reference.md."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from eth_utils import keccak

from chain import abi

ROOT = Path(__file__).resolve().parents[2]

# As docs/reference.md lists them.
TOPICS = {
    "BatchMinted": "0x20c0d4a5bab7118059cf1d2fd0403c4f29a05e446d435b347f90b80778374c54",
    "TokensRevealed": "0x5f36dfedf769ad12bf71aec843edc397276a255b70d51016d99f5fb020dfd902",
    "Transfer": "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
}
SELECTORS = {
    "mint": "0x40c10f19",
    "revealTokens": "0x53de7804",
    "nextTokenId": "0x75794a3c",
    "tokenPromptAuthor": "0x7c407c92",
    "isRevealed": "0x5055fbc3",
    "tokenURI": "0xc87b56dd",
}
ERRORS = {
    "AlreadyRevealed": "0xa3a57894",
    "LengthMismatch": "0xff633a38",
    "AccessControlUnauthorizedAccount": "0xe2517d3f",
}


def items(kind):
    return {item["name"]: item for item in abi.abi() if item["type"] == kind}


@pytest.mark.parametrize(("name", "topic"), sorted(TOPICS.items()))
def test_event_topics_match_the_reference(name, topic):
    assert "0x" + keccak(text=abi.signature(items("event")[name])).hex() == topic


def test_module_constants_match_the_reference():
    assert TOPICS["BatchMinted"] == abi.BATCH_MINTED_TOPIC
    assert TOPICS["TokensRevealed"] == abi.TOKENS_REVEALED_TOPIC
    assert abi.KEEPER_ROLE == "0xfc8737ab85eb45125971625a9ebdb75cc78e01d5c1fa80c4c6e5203f47bc4fab"


@pytest.mark.parametrize(("name", "sel"), sorted(SELECTORS.items()))
def test_function_selectors_match_the_reference(name, sel):
    assert abi.selector(items("function")[name]) == sel


@pytest.mark.parametrize(("name", "sel"), sorted(ERRORS.items()))
def test_error_selectors_match_the_reference(name, sel):
    assert abi.selector(items("error")[name]) == sel


def test_batch_minted_indexes_the_three_reference_fields():
    inputs = items("event")["BatchMinted"]["inputs"]
    assert [(i["name"], i["indexed"]) for i in inputs] == [
        ("minter", True),
        ("promptAuthor", True),
        ("startTokenId", True),
        ("quantity", False),
        ("totalPaid", False),
    ]


def test_committed_artifact_matches_the_solidity_source():
    """Recompiles with the pinned solc and fails when GliskNFT.json is stale."""
    result = subprocess.run(
        ["node", "chain/contracts/compile.js", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert abi.artifact()["compiler"].startswith("solc 0.8.20")
    assert abi.artifact()["openzeppelin"] == "5.0.0"
