"""`manage.py devnet` as an operator runs it: a real process, started, reused, stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chain.adapter import GliskChain
from glisk.devtools import devnet
from glisk.env import read_env_file
from tests.e2e.conftest import test_database_url

ROOT = Path(__file__).resolve().parents[2]


def command_env(var: Path) -> dict[str, str]:
    # The suite's PostgreSQL: without DATABASE_URL each command would start (and, on its way out,
    # stop) an embedded server of its own under `var`, which under load outlasted the timeouts.
    return {
        **os.environ,
        "GLISK_VAR_DIR": str(var),
        "APP_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "glisk.settings",
        "DATABASE_URL": test_database_url(),
    }


def start(var: Path, port: int, **settings: str) -> subprocess.Popen[str]:
    """`manage.py devnet` in the foreground (its output readable), with `settings` in its
    environment."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "devnet", "--port", str(port), "--block-time", "0"],
        cwd=ROOT,
        env={**command_env(var), **settings},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not seen in {lines}")


def test_devnet_deploys_reuses_and_stops_on_ctrl_c(tmp_path):
    port = devnet.free_port()
    first = start(tmp_path, port)
    try:
        out = "".join(wait_for_line(first, "Ctrl-C stops it"))
        assert "(deployed)" in out
        env = read_env_file(tmp_path / "devnet.env")
        assert set(env) >= {
            "RPC_URL",
            "GLISK_NFT_CONTRACT_ADDRESS",
            "CONTRACT_DEPLOYMENT_BLOCK",
            "KEEPER_PRIVATE_KEY",
            "ALCHEMY_WEBHOOK_SECRET",
        }
        assert env["KEEPER_PRIVATE_KEY"] not in out  # the key is written to the file, never printed
        # Linking X and Farcaster works offline on the devnet: its stand-ins run with it, and the
        # chain has a Farcaster IdRegistry.
        assert env["FARCASTER_RPC_URL"] == env["DEVNET_ANVIL_URL"] == f"http://127.0.0.1:{port}"
        assert env["FARCASTER_ID_REGISTRY"].startswith("0x")
        import requests

        # The app reaches the chain through a front that rations compute units as Alchemy's
        # smallest plan does (3,300 in any 10 s): 50 eth_getLogs (3,750) in one batch are refused.
        assert env["RPC_URL"] != env["DEVNET_ANVIL_URL"] and env["RPC_COMPUTE_UNITS_PER_SECOND"] == "330"
        logs = [{"jsonrpc": "2.0", "id": n, "method": "eth_getLogs", "params": [{}]} for n in range(50)]
        refused = requests.post(env["RPC_URL"], json=logs, timeout=5)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == 429

        names = env["FNAME_REGISTRY_URL"]
        assert requests.post(f"{names}/transfers", json={"name": "alice", "to": 3}, timeout=5).ok
        current = requests.get(f"{names}/transfers/current", params={"name": "alice"}, timeout=5).json()
        assert current["transfer"]["to"] == 3
        authorize = requests.get(
            env["X_AUTHORIZE_URL"],
            params={
                "response_type": "code",
                "client_id": env["X_CLIENT_ID"],
                "redirect_uri": env["X_REDIRECT_URI"],
                "scope": "users.read tweet.read",
                "state": "s",
                "code_challenge": "c",
                "code_challenge_method": "S256",
            },
            allow_redirects=False,
            timeout=5,
        )
        assert authorize.status_code == 302 and authorize.headers["Location"].startswith(
            env["X_REDIRECT_URI"]
        )
        through_front = GliskChain(
            rpc_url=env["RPC_URL"], contract_address=env["GLISK_NFT_CONTRACT_ADDRESS"], chain_id=31337
        )
        assert through_front.next_token_id() == 1  # what fits the budget goes through to anvil
        chain = GliskChain(
            rpc_url=env["DEVNET_ANVIL_URL"],
            contract_address=env["GLISK_NFT_CONTRACT_ADDRESS"],
            chain_id=31337,
        )
        from eth_account import Account

        from chain import abi

        assert chain.has_role(abi.KEEPER_ROLE, Account.from_key(env["KEEPER_PRIVATE_KEY"]).address)
        assert chain.balance(Account.from_key(env["KEEPER_PRIVATE_KEY"]).address) > 10**18
        devnet.mint(
            chain,
            minter=devnet.dev_accounts(chain)[2],
            prompt_author=devnet.dev_accounts(chain)[3],
            quantity=2,
        )

        second = subprocess.run(
            [sys.executable, "manage.py", "devnet", "--port", str(port)],
            cwd=ROOT,
            env=command_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 0 and "(reused: running)" in second.stdout
    finally:
        first.send_signal(signal.SIGINT)
        rest = first.communicate(timeout=60)[0]
    assert "devnet stopped" in rest
    assert (tmp_path / "devnet" / "state.json").exists()

    # Started again: the saved chain comes back with the contract and its tokens.
    third = start(tmp_path, port)
    try:
        out = "".join(wait_for_line(third, "Ctrl-C stops it"))
        assert "(reused: saved state)" in out
        assert chain.next_token_id() == 3
    finally:
        third.send_signal(signal.SIGINT)
        third.communicate(timeout=60)


def test_devnet_passes_for_base_sepolia_behind_a_frontend(tmp_path):
    """DEVNET_CHAIN_ID=84532 and FRONTEND_URL, as docs/frontend.md has a frontend developer run
    it: the chain answers 84532 and the app's settings follow it; Multicall3 is the canonical
    code; X sends the browser back through the frontend's origin. The same port asked for
    another chain id while it runs is refused, with the way out."""
    from eth_utils import keccak

    from chain.adapter import MULTICALL3

    port = devnet.free_port()
    frontend = {"DEVNET_CHAIN_ID": "84532", "FRONTEND_URL": "http://localhost:3999/"}
    env = {**command_env(tmp_path), **frontend}
    first = start(tmp_path, port, **frontend)
    try:
        out = "".join(wait_for_line(first, "Ctrl-C stops it"))
        assert "chain id: 84532" in out
        values = read_env_file(tmp_path / "devnet.env")
        assert values["DEVNET_CHAIN_ID"] == "84532"
        assert values["FRONTEND_URL"] == "http://localhost:3999"
        assert values["X_REDIRECT_URI"] == "http://localhost:3999/api/authors/x/callback"
        chain = GliskChain(rpc_url=values["DEVNET_ANVIL_URL"], contract_address="", chain_id=84532)
        chain.check_chain_id()
        code = chain.rpc("eth_getCode", [MULTICALL3, "latest"])
        assert "0x" + keccak(hexstr=code).hex() == (
            "0xd5c15df687b16f2ff992fc8d767b4216323184a2bbc6ee2f9c398c318e770891"
        )
        from glisk.config import load_config

        assert load_config({}, devnet=values).chain_id == 84532  # what `make run` then reads

        other = subprocess.run(
            [sys.executable, "manage.py", "devnet", "--port", str(port)],
            cwd=ROOT,
            env={**env, "DEVNET_CHAIN_ID": "31337"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode != 0 and "runs chain 84532" in other.stderr
        reset = subprocess.run(
            [sys.executable, "manage.py", "devnet", "--port", str(port), "--reset"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reset.returncode != 0 and "stop it before --reset" in reset.stderr
        assert (tmp_path / "devnet.env").exists()  # nothing of the running devnet was forgotten
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
