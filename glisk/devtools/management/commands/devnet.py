"""`manage.py devnet`: a local chain with GliskNFT on it, for development and the demo.

Starts anvil on 127.0.0.1 with its state in var/devnet, deploys the contract, funds a keeper
and grants it KEEPER_ROLE, and writes var/devnet.env, which the settings read when
NETWORK=DEVNET. Run again, it reuses the running chain or the saved state. Ctrl-C stops anvil
(which saves its state).

The chain id is DEVNET_CHAIN_ID (31337 by default; 84532 makes it pass for Base Sepolia, which
the web frontend knows), kept in var/devnet.env so the app follows it. Multicall3 is deployed
at its canonical address with its canonical transaction. With FRONTEND_URL set, the X stand-in
sends the browser back through the frontend's origin (its `/api` proxy), where the sign-in's
cookie lives.

While it runs in the foreground, the app reaches the chain through an RPC front that rations
compute units as Alchemy does (330 a second, its smallest plan; `--rpc-cu-per-second 0` for
none), and the app's own budget is set to the same: what works here works within a real plan.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from eth_account import Account

from chain.adapter import GliskChain
from chain.errors import ChainError
from glisk.devtools import devnet


class Command(BaseCommand):
    help = "Start (or reuse) the local anvil chain with GliskNFT deployed, and write var/devnet.env."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8545)
        parser.add_argument(
            "--block-time",
            type=float,
            default=1.0,
            help="seconds between blocks on an idle chain (0: one block per transaction only)",
        )
        parser.add_argument("--reset", action="store_true", help="forget the saved chain and deploy afresh")
        parser.add_argument(
            "--detach", action="store_true", help="leave anvil running in the background and return"
        )
        parser.add_argument(
            "--rpc-cu-per-second",
            type=float,
            default=330.0,
            help="the RPC front's compute units a second, as Alchemy's smallest plan (0: no front)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        var: Path = settings.VAR_DIR
        env_file: Path = settings.DEVNET_ENV_FILE
        state_file = var / "devnet" / "state.json"
        port = options["port"]
        url = f"http://127.0.0.1:{port}"
        existing = devnet.DevnetInfo.read(env_file)
        if options["reset"]:
            if existing and existing.rpc_url == url and self._alive(existing):
                raise CommandError(
                    f"a devnet runs on port {port} (pid {existing.anvil_pid}): stop it before --reset"
                )
            state_file.unlink(missing_ok=True)
            env_file.unlink(missing_ok=True)
            existing = None

        chain_id = self._chain_id(reset=options["reset"])
        if existing and existing.rpc_url == url and self._alive(existing):
            if existing.chain_id != chain_id:
                raise CommandError(
                    f"the devnet on port {port} runs chain {existing.chain_id}: stop it (its pid is "
                    f"{existing.anvil_pid}) to start chain {chain_id}, or run without DEVNET_CHAIN_ID"
                )
            self._report(existing, reused="running")
            return
        if existing and existing.chain_id != chain_id and state_file.exists():
            self.stdout.write(f"the saved chain is chain {existing.chain_id}: deploying afresh as {chain_id}")
            state_file.unlink()

        process = devnet.start_anvil(
            port=port,
            chain_id=chain_id,
            state_file=state_file,
            block_time=options["block_time"],
            log_file=var / "devnet" / "anvil.log",
        )
        try:
            bare = GliskChain(rpc_url=url, contract_address="", chain_id=chain_id)
            if (
                existing
                and existing.rpc_url == url
                and existing.chain_id == chain_id
                and devnet.has_contract(bare, existing.contract_address)
            ):
                info = devnet.DevnetInfo(**{**existing.as_dict(), "anvil_pid": process.pid})
                devnet.put_multicall3(bare)  # a state saved before the canonical Multicall3
                reused = "saved state"
            else:
                info = devnet.DevnetInfo(
                    **{**devnet.provision(bare, rpc_url=url).as_dict(), "anvil_pid": process.pid}
                )
                reused = ""
            info.write(env_file)
            self._report(info, reused=reused)
            if options["detach"]:
                return
            social = self._social_standins(env_file, port=8000)
            if options["rpc_cu_per_second"] > 0:
                social.append(self._rpc_front(env_file, anvil_url=url, rate=options["rpc_cu_per_second"]))
            self.stdout.write("devnet running; Ctrl-C stops it")
            stop = threading.Event()
            # Explicit handlers: a process started in the background (a CI job, `make devnet &`)
            # inherits SIGINT as ignored, and Ctrl-C would then never stop it.
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            try:
                while not stop.is_set() and process.poll() is None:
                    stop.wait(0.5)
            except KeyboardInterrupt:
                pass
        except BaseException:
            devnet.stop_process(process)
            raise
        for standin in social:
            standin.stop()
        devnet.stop_process(process)
        self.stdout.write("devnet stopped (state saved)")
        if process.returncode not in (0, -signal.SIGTERM, None):
            sys.exit(1)

    def _chain_id(self, *, reset: bool) -> int:
        """DEVNET_CHAIN_ID when the environment (or .env) names it; else the saved chain's (the
        settings read it from var/devnet.env), unless --reset forgets it."""
        if "DEVNET_CHAIN_ID" in os.environ or not reset:
            return int(settings.GLISK.devnet_chain_id)
        return devnet.DEVNET_CHAIN_ID

    def _social_standins(self, env_file: Path, *, port: int) -> list[Any]:
        """X's OAuth and the Farcaster name registry as stand-ins while the devnet runs (the
        chain's IdRegistry stands for OP Mainnet's), added to var/devnet.env: `manage.py serve`
        then links accounts offline. Register a name with
        `curl -d '{"name": "alice", "to": <fid>}' <FNAME_REGISTRY_URL>/transfers`.

        FRONTEND_URL, when the environment sets it (the web frontend's development server), is
        where the callback goes: X sends the browser back through the frontend's `/api` proxy.
        Otherwise the callback is the app's own (`manage.py serve` on port 8000)."""
        from glisk.devtools.stack import DEMO_FRONTEND_URL
        from glisk.devtools.standins.fnames import FnamesStandIn
        from glisk.devtools.standins.x import XStandIn

        frontend = os.environ.get("FRONTEND_URL", "").strip().rstrip("/")
        x, names = XStandIn().start(), FnamesStandIn().start()
        values = {
            "FRONTEND_URL": frontend or DEMO_FRONTEND_URL,
            "X_CLIENT_ID": x.client_id,
            "X_CLIENT_SECRET": x.client_secret,
            "X_REDIRECT_URI": devnet.x_redirect_uri(
                frontend_url=frontend, api_url=f"http://127.0.0.1:{port}"
            ),
            "X_AUTHORIZE_URL": x.authorize_url,
            "X_API_URL": x.url,
            "FNAME_REGISTRY_URL": names.url,
        }
        with env_file.open("a") as handle:
            handle.write("# The X and Farcaster name registry stand-ins of this devnet run:\n")
            handle.writelines(f"{key}={value}\n" for key, value in values.items())
        self.stdout.write(f"  X stand-in: {x.url}  name registry stand-in: {names.url}")
        return [x, names]

    def _rpc_front(self, env_file: Path, *, anvil_url: str, rate: float) -> Any:
        """The RPC front for anvil, rationing compute units at `rate`, as the app's RPC_URL (and
        the app's own budget at the same rate), added to var/devnet.env."""
        from glisk.devtools.standins.rpc import RpcStandIn

        front = RpcStandIn(anvil_url, cu_per_second=rate).start()
        values = {
            "DEVNET_ANVIL_URL": anvil_url,
            "RPC_URL": front.url,
            "RPC_COMPUTE_UNITS_PER_SECOND": f"{rate:g}",
        }
        with env_file.open("a") as handle:
            handle.write(
                f"# The RPC front of this devnet run ({rate:g} compute units a second, as Alchemy):\n"
            )
            handle.writelines(f"{key}={value}\n" for key, value in values.items())
        self.stdout.write(f"  RPC front: {front.url} ({rate:g} compute units a second)")
        return front

    def _alive(self, info: devnet.DevnetInfo) -> bool:
        chain = GliskChain(
            rpc_url=info.rpc_url,
            contract_address=info.contract_address,
            chain_id=info.chain_id,
            timeout=1,
        )
        try:
            chain.check_chain_id()
            return devnet.has_contract(chain, info.contract_address)
        except ChainError:
            return False

    def _report(self, info: devnet.DevnetInfo, reused: str) -> None:
        keeper = Account.from_key(info.keeper_private_key).address
        how = f" (reused: {reused})" if reused else " (deployed)"
        self.stdout.write(
            f"devnet ready{how}\n  chain id: {info.chain_id}\n  rpc: {info.rpc_url}\n"
            f"  contract: {info.contract_address} "
            f"(block {info.deployment_block})\n  keeper: {keeper}\n  settings: {settings.DEVNET_ENV_FILE}"
        )
