"""The whole system as real processes on one machine: anvil with our contract, the web app under
gunicorn, N qclusters and the webhook relay. Used by `manage.py demo`, the end-to-end tests and
the benchmarks, so that all three exercise exactly what a deployment runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from chain.adapter import GliskChain
from chain.errors import ChainError
from glisk.devtools import devnet
from glisk.devtools.standins.fnames import FnamesStandIn, sign_in_message
from glisk.devtools.standins.x import XStandIn

ROOT = Path(__file__).resolve().parents[2]
DEMO_FRONTEND_URL = "http://localhost:3000"  # the web frontend's development server


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class Stack:
    """Start with `start_chain()`, then the services you need; `stop()` ends everything."""

    var_dir: Path
    database_url: str
    web_port: int = 0
    block_time: float = 0.0
    workers_per_cluster: int = 4
    chain_id: int = devnet.DEVNET_CHAIN_ID
    extra_env: dict[str, str] = field(default_factory=dict)
    info: devnet.DevnetInfo | None = None
    procs: list[Proc] = field(default_factory=list)
    _anvil: subprocess.Popen[bytes] | None = None
    x: XStandIn | None = None
    fnames: FnamesStandIn | None = None

    def __post_init__(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        (self.var_dir / "logs").mkdir(exist_ok=True)
        self.web_port = self.web_port or devnet.free_port()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def anvil_pid(self) -> int | None:
        """The chain's process (benchmarks read its CPU time), while it runs."""
        return self._anvil.pid if self._anvil is not None else None

    def chain(self) -> GliskChain:
        assert self.info is not None
        return GliskChain(
            rpc_url=self.info.rpc_url,
            contract_address=self.info.contract_address,
            chain_id=self.chain_id,
        )

    # --- the chain -------------------------------------------------------------------------
    def start_chain(self, *, port: int = 0) -> devnet.DevnetInfo:
        port = port or devnet.free_port()
        self._anvil = devnet.start_anvil(
            port=port,
            chain_id=self.chain_id,
            block_time=self.block_time,
            accounts=20,
            log_file=self.var_dir / "logs" / "anvil.log",
        )
        url = f"http://127.0.0.1:{port}"
        bare = GliskChain(rpc_url=url, contract_address="", chain_id=self.chain_id)
        self.info = devnet.provision(bare, rpc_url=url)
        return self.info

    # --- X and Farcaster -------------------------------------------------------------------
    def start_social_standins(self, *, frontend_url: str = DEMO_FRONTEND_URL) -> None:
        """X's OAuth and the Farcaster name registry as stand-ins (threads of this process), and
        the web app configured for them; start before the web app. The chain's IdRegistry
        stands for OP Mainnet's."""
        self.x = XStandIn().start()
        self.fnames = FnamesStandIn().start()
        self.extra_env.update(
            {
                "FRONTEND_URL": frontend_url,
                "X_CLIENT_ID": self.x.client_id,
                "X_CLIENT_SECRET": self.x.client_secret,
                # Straight to the app: the demo's "browser" talks to it with no frontend between.
                "X_REDIRECT_URI": devnet.x_redirect_uri(frontend_url="", api_url=self.web_url),
                "X_AUTHORIZE_URL": self.x.authorize_url,
                "X_API_URL": self.x.url,
                "FNAME_REGISTRY_URL": self.fnames.url,
            }
        )

    # --- processes -------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The processes' environment: ours, plus the database and (on a devnet) the chain."""
        # The test settings' STAGE_CONCURRENCY=1 is for in-process tests, not for our processes.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "STAGE_CONCURRENCY"}
        env.update(
            {
                "APP_ENV": "test",
                "DEBUG": "false",
                "DJANGO_SETTINGS_MODULE": "glisk.settings",
                "DATABASE_URL": self.database_url,
                "GLISK_VAR_DIR": str(self.var_dir),
                "QCLUSTER_WORKERS": str(self.workers_per_cluster),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.info is not None:
            env.update(
                {
                    "NETWORK": "DEVNET",
                    "DEVNET_CHAIN_ID": str(self.chain_id),
                    "RPC_URL": self.info.rpc_url,
                    "GLISK_NFT_CONTRACT_ADDRESS": self.info.contract_address,
                    "CONTRACT_DEPLOYMENT_BLOCK": str(self.info.deployment_block),
                    "KEEPER_PRIVATE_KEY": self.info.keeper_private_key,
                    "ALCHEMY_WEBHOOK_SECRET": self.info.webhook_secret,
                }
            )
            if self.info.farcaster_id_registry:
                env["FARCASTER_RPC_URL"] = self.info.rpc_url
                env["FARCASTER_ID_REGISTRY"] = self.info.farcaster_id_registry
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str]) -> Proc:
        log = open(self.var_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop())
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(name=name, process=process, log=log)
        self.procs.append(proc)
        return proc

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_web(self, *, workers: int = 2, threads: int = 4) -> Proc:
        proc = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "glisk.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--worker-class",
                "gthread",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
            ],
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(f"the web app exited: see {self.var_dir / 'logs' / 'web.log'}")
            try:
                if requests.get(f"{self.web_url}/health", timeout=1).status_code == 200:
                    return proc
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the web app did not become healthy within 60 s")

    def start_cluster(self, name: str = "cluster-1") -> Proc:
        return self._spawn(name, [sys.executable, "manage.py", "qcluster"])

    def start_relay(self) -> Proc:
        assert self.info is not None
        return self._spawn(
            "relay",
            [
                sys.executable,
                "manage.py",
                "webhook_relay",
                "--url",
                f"{self.web_url}/webhooks/alchemy",
                "--from-block",
                str(self.info.deployment_block + 1),
            ],
        )

    def start_relay_to_head(self) -> Proc:
        """The relay for an existing devnet (the settings' chain), from the current head on."""
        return self._spawn(
            "relay",
            [sys.executable, "manage.py", "webhook_relay", "--url", f"{self.web_url}/webhooks/alchemy"],
        )

    def kill(self, proc: Proc, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a cluster's workers die with it, as with a lost machine)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, sig)
        proc.process.wait(timeout=30)
        self.procs.remove(proc)
        proc.log.close()

    def stop(self) -> None:
        for proc in list(reversed(self.procs)):
            if proc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)
        # A qcluster whose group got SIGTERM loses its sentinel at once and then waits on it for
        # half a minute or more; its work is lease-safe to kill, so all get 3 s together, then SIGKILL.
        deadline = time.monotonic() + 3
        for proc in list(self.procs):
            try:
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process.wait(timeout=10)
            proc.log.close()
        self.procs.clear()
        if self._anvil is not None:
            devnet.stop_process(self._anvil)
            self._anvil = None
        for standin in (self.x, self.fnames):
            if standin is not None:
                standin.stop()
        self.x = self.fnames = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def mint_plan(total: int, *, seed: int = 7) -> list[int]:
    """Batch sizes from 1 to 50 that add up to `total` (a realistic mix, reproducible)."""
    import random

    rng = random.Random(seed)  # noqa: S311 (a reproducible mix, not a secret)
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(left, rng.choice([1, 1, 2, 3, 5, 8, 10, 20, 35, 50]))
        sizes.append(size)
        left -= size
    return sizes


def mint_many(
    chain: GliskChain, sizes: list[int], *, authors: list[str], collectors: list[str]
) -> list[float]:
    """Mint every batch (rotating collectors and authors); returns the wall time of each mint."""
    times: list[float] = []
    for n, size in enumerate(sizes):
        devnet.mint(
            chain,
            minter=collectors[n % len(collectors)],
            prompt_author=authors[n % len(authors)],
            quantity=size,
        )
        times.append(time.time())
    return times


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except ChainError:
            pass
        time.sleep(interval)
    return bool(predicate())


def link_social_accounts(stack: Stack, *, wallet: str, fname: str) -> dict[str, str]:
    """Link X and Farcaster to `wallet` (an unlocked dev account) through the web app: the X
    sign-in, signed with the bound link message, through the X stand-in; and the frontend's
    static wallet message with a Sign In With Farcaster message signed by the wallet as custody
    address of a fid registered on the chain's IdRegistry.
    Returns what the frontend would show (the callback's query, the link's answer)."""
    import secrets
    from datetime import UTC, datetime, timedelta
    from urllib.parse import parse_qs, urlsplit

    if stack.info is None or stack.x is None or stack.fnames is None:
        raise RuntimeError("start the chain and the social stand-ins first")
    chain = stack.chain()

    def personal_sign(message: str) -> str:
        return str(chain.rpc("personal_sign", ["0x" + message.encode().hex(), wallet]))

    browser = requests.Session()  # keeps the sign-in cookie, as the frontend's browser does
    # The bound link message (a server nonce): only a link proven so is pinned into metadata.
    nonce = browser.get(f"{stack.web_url}/api/authors/{wallet}/nonce", timeout=10)
    nonce.raise_for_status()
    x_message = nonce.json()["link_messages"]["x"]
    started = browser.post(
        f"{stack.web_url}/api/authors/x/auth/start",
        json={"wallet_address": wallet, "message": x_message, "signature": personal_sign(x_message)},
        timeout=10,
    )
    started.raise_for_status()
    consent = requests.get(started.json()["authorization_url"], allow_redirects=False, timeout=10)
    back = browser.get(consent.headers["Location"], allow_redirects=False, timeout=10)
    x_result = {k: v[-1] for k, v in parse_qs(urlsplit(back.headers.get("Location", "")).query).items()}

    fid = devnet.register_fid(chain, registry=stack.info.farcaster_id_registry, custody=wallet)
    stack.fnames.register(fname, fid, owner=wallet)
    domain = urlsplit(stack.extra_env.get("FRONTEND_URL", DEMO_FRONTEND_URL)).netloc
    issued = datetime.now(tz=UTC)
    siwf = sign_in_message(
        domain=domain,
        address=wallet,
        fid=fid,
        issued=issued,
        expires=issued + timedelta(minutes=10),
        nonce=secrets.token_hex(8),
    )
    wallet_message = f"Link Farcaster account for wallet: {wallet}"
    linked = requests.post(
        f"{stack.web_url}/api/authors/farcaster/link",
        json={
            "wallet_address": wallet,
            "wallet_message": wallet_message,
            "wallet_signature": personal_sign(wallet_message),
            "farcaster_message": siwf,
            "farcaster_signature": personal_sign(siwf),
            "fid": fid,
            "username": fname,
        },
        timeout=10,
    )
    farcaster = linked.json()
    return {
        "x": f"@{x_result['username']}" if x_result.get("x_linked") == "true" else f"failed: {x_result}",
        "farcaster": f"{farcaster['username']} (fid {farcaster['fid']})"
        if linked.status_code == 200
        else f"failed: {farcaster.get('detail')}",
    }
