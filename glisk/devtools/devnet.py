"""The local chain: anvil from npm with our GliskNFT deployed on it.

Used by `manage.py devnet`, the demo and the tests. anvil's dev accounts are unlocked, so the
deployer and the simulated collectors send with `eth_sendTransaction`; the keeper gets a fresh
key of its own (funded and granted KEEPER_ROLE) so that it signs exactly as it does on Base.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from chain import abi
from chain.adapter import MULTICALL3, GliskChain
from chain.errors import ChainError

ROOT = Path(__file__).resolve().parents[2]
ANVIL_BINARY = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
DEVNET_CHAIN_ID = 31337
MINT_PRICE_WEI = 10**15  # 0.001 ETH
PLACEHOLDER_URI = "ipfs://placeholder"
KEEPER_FUNDING_WEI = 1000 * 10**18


class DevnetError(RuntimeError):
    pass


@dataclass(frozen=True)
class DevnetInfo:
    """What the other commands need to use the devnet (written to var/devnet.env)."""

    rpc_url: str
    contract_address: str
    deployment_block: int
    keeper_private_key: str
    webhook_secret: str
    anvil_pid: int = 0
    # A Farcaster IdRegistry of our own on the same chain (the OP Mainnet one, offline).
    farcaster_id_registry: str = ""
    chain_id: int = DEVNET_CHAIN_ID

    def env(self) -> dict[str, str]:
        values = {
            "DEVNET_CHAIN_ID": str(self.chain_id),
            "RPC_URL": self.rpc_url,
            "GLISK_NFT_CONTRACT_ADDRESS": self.contract_address,
            "CONTRACT_DEPLOYMENT_BLOCK": str(self.deployment_block),
            "KEEPER_PRIVATE_KEY": self.keeper_private_key,
            "ALCHEMY_WEBHOOK_SECRET": self.webhook_secret,
            "DEVNET_ANVIL_PID": str(self.anvil_pid),
        }
        if self.farcaster_id_registry:
            values["FARCASTER_RPC_URL"] = self.rpc_url
            values["FARCASTER_ID_REGISTRY"] = self.farcaster_id_registry
        return values

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by `manage.py devnet`: the local chain's settings (NETWORK=DEVNET only)."]
        lines += [f"{k}={v}" for k, v in self.env().items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)  # holds the keeper key
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> DevnetInfo | None:
        from glisk.env import read_env_file

        values = read_env_file(path)
        try:
            return cls(
                # anvil itself, not the RPC front a foreground devnet puts before it
                rpc_url=values.get("DEVNET_ANVIL_URL") or values["RPC_URL"],
                contract_address=values["GLISK_NFT_CONTRACT_ADDRESS"],
                deployment_block=int(values["CONTRACT_DEPLOYMENT_BLOCK"]),
                keeper_private_key=values["KEEPER_PRIVATE_KEY"],
                webhook_secret=values["ALCHEMY_WEBHOOK_SECRET"],
                anvil_pid=int(values.get("DEVNET_ANVIL_PID", "0") or 0),
                farcaster_id_registry=values.get("FARCASTER_ID_REGISTRY", ""),
                chain_id=int(values.get("DEVNET_CHAIN_ID") or DEVNET_CHAIN_ID),
            )
        except (KeyError, ValueError):
            return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_anvil(
    *,
    port: int,
    state_file: Path | None = None,
    block_time: float = 0,
    log_file: Path | None = None,
    accounts: int = 10,
    chain_id: int = DEVNET_CHAIN_ID,
) -> subprocess.Popen[bytes]:
    """Start anvil on 127.0.0.1:`port` and wait until it answers.

    `block_time` 0 mines a block per transaction; > 0 also mines every `block_time` seconds
    (mixed mining), so confirmations keep coming on an idle chain.
    """
    if not ANVIL_BINARY.exists():
        raise DevnetError(f"anvil is not installed at {ANVIL_BINARY.relative_to(ROOT)}: run `npm ci`")
    args = [
        str(ANVIL_BINARY),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(accounts),
        "--balance",
        "100000",
    ]
    if block_time > 0:
        args += ["--block-time", f"{block_time:g}", "--mixed-mining"]
    if state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        args += ["--state", str(state_file)]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 (lives with the process)
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    rpc = GliskChain(rpc_url=f"http://127.0.0.1:{port}", contract_address="", chain_id=chain_id, timeout=2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevnetError(f"anvil exited with code {process.returncode} (port {port} in use?)")
        try:
            rpc.check_chain_id()
            return process
        except ChainError:
            time.sleep(0.1)
    stop_process(process)
    raise DevnetError("anvil did not answer within 30 s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM (anvil writes its state file on the way out), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def send_and_wait(chain: GliskChain, tx: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """`eth_sendTransaction` from an unlocked dev account; the receipt, or `DevnetError` on revert."""
    tx_hash = chain.rpc("eth_sendTransaction", [tx])
    receipt = wait_for_receipt(chain, tx_hash, timeout=timeout)
    if int(receipt["status"], 16) != 1:
        raise DevnetError(f"transaction {tx_hash} reverted")
    return receipt


def wait_for_receipt(chain: GliskChain, tx_hash: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = chain.rpc("eth_getTransactionReceipt", [tx_hash])
        if receipt:
            return receipt
        time.sleep(0.05)
    raise DevnetError(f"no receipt for {tx_hash} within {timeout:g}s")


def dev_accounts(chain: GliskChain) -> list[str]:
    return [to_checksum_address(a) for a in chain.rpc("eth_accounts")]


def deploy(chain: GliskChain, *, deployer: str) -> tuple[str, int]:
    """Deploy GliskNFT; returns (address, block number)."""
    constructor = abi_encode(
        ["string", "string", "string", "uint256"],
        ["GLISK Season 0", "GLISK", PLACEHOLDER_URI, MINT_PRICE_WEI],
    )
    data = abi.artifact()["bytecode"] + constructor.hex()
    receipt = send_and_wait(chain, {"from": deployer, "data": data, "gas": hex(8_000_000)})
    return to_checksum_address(receipt["contractAddress"]), int(receipt["blockNumber"], 16)


ID_REGISTRY_ARTIFACT = Path(__file__).resolve().parent / "contracts" / "FarcasterIdRegistry.json"


MULTICALL3_DEPLOYMENT = Path(__file__).resolve().parent / "contracts" / "Multicall3.deployment.json"


def multicall3_deployment() -> dict[str, Any]:
    """The canonical Multicall3 deployment, checked: its transaction is signed by the keyless
    signer for nonce 0, so it creates Multicall3 at its canonical address (as on Base)."""
    import json

    from eth_typing import HexAddress, HexStr
    from web3.types import Nonce
    from web3.utils.address import get_create_address

    deployment: dict[str, Any] = json.loads(MULTICALL3_DEPLOYMENT.read_text())
    signer = Account.recover_transaction(deployment["raw_transaction"])
    created = get_create_address(HexAddress(HexStr(signer)), Nonce(0))
    if signer.lower() != deployment["signer"].lower() or created.lower() != MULTICALL3.lower():
        raise DevnetError(f"{MULTICALL3_DEPLOYMENT.name} does not create Multicall3 at {MULTICALL3}")
    return deployment


def x_redirect_uri(*, frontend_url: str, api_url: str) -> str:
    """Where X sends the browser back after its consent. Through the web frontend's origin when
    there is one: the frontend starts the sign-in through its own `/api` proxy, so the cookie
    that ties the callback to the browser that started it belongs to that origin, and a callback
    straight to the API's origin would never carry it (`browser_mismatch`)."""
    return f"{(frontend_url or api_url).rstrip('/')}/api/authors/x/callback"


def put_multicall3(chain: GliskChain) -> None:
    """Deploy Multicall3 as every chain has it: its canonical transaction, replayed (funded for,
    sent raw), so the devnet has the same code at the same address as Base. wagmi (the web
    frontend) and the keeper read many tokens in one call there. A chain that already has it
    keeps it; one with other code there (an older devnet's stand-in) gets the canonical code."""
    from eth_utils import keccak

    deployment = multicall3_deployment()
    expected = deployment["runtime_code_keccak256"]

    def code_hash() -> str:
        code = chain.rpc("eth_getCode", [MULTICALL3, "latest"])
        return "0x" + keccak(hexstr=code).hex() if code not in ("0x", "0x0", None) else ""

    found = code_hash()
    if found == expected:
        return
    signer = deployment["signer"]
    if found:  # CREATE refuses an address with code or a nonce
        chain.rpc("anvil_setCode", [MULTICALL3, "0x"])
        chain.rpc("anvil_setNonce", [MULTICALL3, "0x0"])
    chain.rpc("anvil_setNonce", [signer, "0x0"])  # the transaction is signed for nonce 0
    chain.rpc("anvil_setBalance", [signer, hex(deployment["gas_price_wei"] * deployment["gas_limit"])])
    wait_for_receipt(chain, chain.rpc("eth_sendRawTransaction", [deployment["raw_transaction"]]))
    if (found := code_hash()) != expected:
        raise DevnetError(f"Multicall3's deployment left code of hash {found or 'none'}, not {expected}")


def deploy_id_registry(chain: GliskChain, *, deployer: str) -> str:
    """Deploy the devnet's Farcaster IdRegistry (custodyOf/idOf, as on OP Mainnet)."""
    import json

    bytecode = json.loads(ID_REGISTRY_ARTIFACT.read_text())["bytecode"]
    receipt = send_and_wait(chain, {"from": deployer, "data": bytecode, "gas": hex(2_000_000)})
    return to_checksum_address(receipt["contractAddress"])


def register_fid(chain: GliskChain, *, registry: str, custody: str) -> int:
    """Register a fid whose custody address is `custody` (an unlocked dev account); returns it."""
    send_and_wait(
        chain, {"from": custody, "to": registry, "data": abi.calldata("register", ["address"], [custody])}
    )
    return int(chain.with_contract(registry).call("idOf", ["address"], [custody], ["uint256"])[0])


def grant_keeper_role(chain: GliskChain, *, admin: str, keeper: str) -> None:
    data = abi.calldata("grantRole", ["bytes32", "address"], [HexBytes(abi.KEEPER_ROLE), keeper])
    send_and_wait(chain, {"from": admin, "to": chain.contract_address, "data": data})


def fund(chain: GliskChain, address: str, wei: int = KEEPER_FUNDING_WEI) -> None:
    chain.rpc("anvil_setBalance", [address, hex(wei)])


def mint(
    chain: GliskChain, *, minter: str, prompt_author: str, quantity: int, value: int | None = None
) -> dict[str, Any]:
    """Send `mint(promptAuthor, quantity)` from an unlocked dev account; returns the receipt."""
    data = abi.calldata("mint", ["address", "uint256"], [prompt_author, quantity])
    paid = MINT_PRICE_WEI * quantity if value is None else value
    return send_and_wait(
        chain,
        {"from": minter, "to": chain.contract_address, "data": data, "value": hex(paid)},
    )


def has_contract(chain: GliskChain, address: str) -> bool:
    code = chain.rpc("eth_getCode", [address, "latest"])
    return bool(code) and code not in ("0x", "0x0")


def provision(
    chain: GliskChain,
    *,
    rpc_url: str,
    webhook_secret: str | None = None,
    keeper_private_key: str | None = None,
) -> DevnetInfo:
    """Deploy the contract, create and fund a keeper, grant it KEEPER_ROLE."""
    accounts = dev_accounts(chain)
    put_multicall3(chain)
    address, block = deploy(chain, deployer=accounts[0])
    keeper_key = keeper_private_key or "0x" + secrets.token_hex(32)
    keeper = Account.from_key(keeper_key).address
    deployed = chain.with_contract(address)
    fund(deployed, keeper)
    grant_keeper_role(deployed, admin=accounts[0], keeper=keeper)
    registry = deploy_id_registry(chain, deployer=accounts[0])
    return DevnetInfo(
        rpc_url=rpc_url,
        contract_address=address,
        deployment_block=block,
        keeper_private_key=keeper_key,
        webhook_secret=webhook_secret or "whsec_devnet_" + secrets.token_hex(16),
        farcaster_id_registry=registry,
        chain_id=chain.chain_id,
    )
