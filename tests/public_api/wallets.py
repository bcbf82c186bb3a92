"""Wallets of every kind collectors use on Base, on the test anvil: keys (EOA), a deployed
smart-contract wallet (ERC-1271) and one that a factory will deploy later (ERC-6492)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from chain import abi
from glisk.devtools import devnet

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
SUFFIX = bytes.fromhex("6492" * 16)


def artifact(name: str) -> dict:
    return json.loads((CONTRACTS / f"{name}.json").read_text())


def personal_sign(key: str, message: str) -> bytes:
    return bytes(Account.sign_message(encode_defunct(text=message), private_key=key).signature)


def new_key() -> str:
    return "0x" + secrets.token_hex(32)


@dataclass
class Wallet:
    address: str
    owner_key: str
    kind: str
    factory: str = ""
    salt: bytes = b""

    def sign(self, message: str, *, key: str | None = None) -> str:
        inner = personal_sign(key or self.owner_key, message)
        if self.kind != "erc6492":
            return "0x" + inner.hex()
        deploy = abi.calldata("deploy", ["address", "bytes32"], [self.owner(), self.salt])
        wrapped = encode(["address", "bytes", "bytes"], [self.factory, bytes.fromhex(deploy[2:]), inner])
        return "0x" + (wrapped + SUFFIX).hex()

    def owner(self) -> str:
        return Account.from_key(self.owner_key).address


def eoa() -> Wallet:
    key = new_key()
    return Wallet(address=Account.from_key(key).address, owner_key=key, kind="eoa")


def deployed_wallet(chain, deployer: str) -> Wallet:
    key = new_key()
    owner = Account.from_key(key).address
    code = artifact("TestWallet")["bytecode"] + encode(["address"], [owner]).hex()
    receipt = devnet.send_and_wait(chain, {"from": deployer, "data": code, "gas": hex(3_000_000)})
    return Wallet(address=to_checksum_address(receipt["contractAddress"]), owner_key=key, kind="erc1271")


def factory_contract(chain, deployer: str) -> str:
    receipt = devnet.send_and_wait(
        chain, {"from": deployer, "data": artifact("TestWalletFactory")["bytecode"], "gas": hex(3_000_000)}
    )
    return to_checksum_address(receipt["contractAddress"])


def counterfactual_wallet(chain, factory: str) -> Wallet:
    """A wallet whose address is known but which has no code yet."""
    key = new_key()
    owner = Account.from_key(key).address
    salt = secrets.token_bytes(32)
    predicted = chain.with_contract(factory).call(
        "predict", ["address", "bytes32"], [owner, salt], ["address"]
    )
    wallet = Wallet(
        address=to_checksum_address(predicted[0]), owner_key=key, kind="erc6492", factory=factory, salt=salt
    )
    assert chain.rpc("eth_getCode", [wallet.address, "latest"]) in ("0x", "0x0")
    return wallet
