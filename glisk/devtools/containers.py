"""`make test-containers`: the container deployment built and run for real, end to end.

Uses the project's own Dockerfile and docker-compose.yml, unchanged: builds the image, brings up
the `devnet` profile (PostgreSQL, the one-shot migrate, web, three qcluster containers, anvil
with our contract, the Replicate and Pinata stand-ins, the webhook relay), mints tokens from the
host as collectors would, waits until the chain shows every one revealed, runs the demo's audit
inside the web container (tokenURI, metadata and image bytes against their CIDs through the
Pinata stand-in's gateway, one reveal per token, no reverts), checks that several qcluster
containers did stage work and that the image behaves (non-root, static files, JSON logs), prints
a summary and tears everything down, volumes included.

Docker: a running engine is used as it is; otherwise Debian's docker.io is installed when
missing and `dockerd` is started here and stopped (by its pid) at the end. Where the public base
images cannot be pulled, stand-ins with the same names are built from Debian's archive
(deploy/containers/README.md).

    python -m glisk.devtools.containers [--tokens 300] [--workers 3] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from glisk.devtools import devnet
from glisk.devtools.docker import (
    APP_IMAGE,
    ROOT,
    RunFailed,
    build_images,
    compose_command,
    docker_engine,
    ensure_base_images,
    image_size_mb,
    run,
    say,
)

PROJECT = "glisk-containers"  # + the run's pid
DEVNET_ENV = "deploy/devnet/devnet.env"


@dataclass
class Stack:
    compose: list[str]
    workers: int
    # One project per run: a second run on the same engine leaves the first one's stack alone.
    project: str = field(default_factory=lambda: f"{PROJECT}-{os.getpid()}")
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {
            name: devnet.free_port()
            for name in ("WEB_PORT", "CHAIN_PORT", "PINATA_PORT", "X_PORT", "FNAMES_PORT")
        }

    def env(self) -> dict[str, str]:
        # Only the ports come from us; the rest of the compose variables from the devnet file
        # (a developer's own POSTGRES_* or GLISK_ENV_FILE must not reach this run).
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "GLISK_ENV", "COMPOSE_"))
        }
        ports = {k: str(v) for k, v in self.ports.items()}
        # The browser's consent page at the X stand-in, on the port this run publishes it on.
        authorize = f"http://localhost:{self.ports['X_PORT']}/i/oauth2/authorize"
        return {**inherited, **ports, "X_AUTHORIZE_URL": authorize}

    @property
    def command(self) -> list[str]:
        return [*self.compose, "-p", self.project, "--env-file", DEVNET_ENV, "--profile", "devnet"]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [*self.command, *args],
            env=self.env(),
            check=check,
            timeout=timeout,
        )

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['WEB_PORT']}"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['CHAIN_PORT']}"

    def containers(self, service: str) -> list[dict[str, str]]:
        """Each container of `service`: its name, id, host name and state."""
        ids = self("ps", "-q", service).stdout.split()
        found = []
        for container_id in ids:
            inspected = json.loads(run(["docker", "inspect", container_id]).stdout)[0]
            found.append(
                {
                    "id": container_id[:12],
                    "name": inspected["Name"].lstrip("/"),
                    "hostname": inspected["Config"]["Hostname"],
                    "state": inspected["State"]["Status"],
                    "exit_code": str(inspected["State"]["ExitCode"]),
                }
            )
        return found

    def up(self) -> None:
        self("down", "-v", "--remove-orphans", check=False)
        self("up", "-d", "--no-build", "--scale", f"qcluster={self.workers}", timeout=900)

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)

    def logs(self, service: str, tail: int = 40) -> str:
        return self("logs", "--no-color", "--tail", str(tail), service, check=False).stdout


def wait_for(what: str, predicate: Any, *, timeout: float, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise RunFailed(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def devnet_settings() -> dict[str, str]:
    from glisk.env import read_env_file

    return read_env_file(ROOT / DEVNET_ENV)


def mint(stack: Stack, tokens: int) -> tuple[Any, float]:
    from chain.adapter import GliskChain
    from glisk.devtools.stack import mint_many, mint_plan

    chain = GliskChain(
        rpc_url=stack.rpc_url,
        contract_address=devnet_settings()["GLISK_NFT_CONTRACT_ADDRESS"],
        chain_id=devnet.DEVNET_CHAIN_ID,
    )
    wait_for(
        "the contract on the chain", lambda: devnet.has_contract(chain, chain.contract_address), timeout=120
    )
    accounts = devnet.dev_accounts(chain)
    sizes = mint_plan(tokens)
    started = time.time()
    mint_many(chain, sizes, authors=accounts[1:4], collectors=accounts[4:12])
    say(f"minted {tokens} tokens in {len(sizes)} transactions from {len(accounts[4:12])} collectors")
    return chain, started


def revealed_on_chain(chain: Any, total: int) -> int:
    states = chain.token_states(list(range(1, total + 1)))
    return sum(1 for state in states.values() if getattr(state, "revealed", False))


def check_image(stack: Stack) -> list[str]:
    """What the issue asks of the image itself; returns the problems found."""
    problems = []
    uid = stack("exec", "-T", "web", "id", "-u").stdout.strip()
    if uid == "0":
        problems.append("the web container runs as root")
    health = requests.get(f"{stack.web_url}/health", timeout=10)
    if health.status_code != 200:
        problems.append(f"/health answered {health.status_code}")
    login = requests.get(f"{stack.web_url}/admin/login/", timeout=10)
    stylesheets = [
        part.split('"')[0] for part in login.text.split('href="')[1:] if ".css" in part.split('"')[0]
    ]
    if not stylesheets:
        problems.append("the admin login page links no stylesheet")
    for href in stylesheets[:3]:
        static = requests.get(f"{stack.web_url}{href}", timeout=10)
        if static.status_code != 200 or "text/css" not in static.headers.get("Content-Type", ""):
            problems.append(f"static file {href} answered {static.status_code}")
    migrations = [c for c in stack.containers("migrate") if c["exit_code"] != "0"]
    if migrations or not stack.containers("migrate"):
        problems.append("the one-shot migrate did not finish with 0")
    for service in ("web", "qcluster"):
        if "Applying " in stack.logs(service, tail=2000):
            problems.append(f"{service} ran migrations itself")
    web = stack.containers("web")
    for container in web + stack.containers("qcluster"):
        logged = run(["docker", "logs", "--tail", "200", container["id"]])
        lines = (logged.stdout + logged.stderr).splitlines()  # stderr too: nothing but JSON anywhere
        not_json = [line for line in lines if line.strip() and not _is_json(line)]
        if not lines:
            problems.append(f"{container['name']} logged nothing on stdout")
        elif not_json:
            problems.append(f"{container['name']} logs a line that is not JSON: {not_json[0][:200]}")
        errors = [
            line
            for line in lines
            if _is_json(line) and json.loads(line).get("level") in ("error", "critical")
        ]
        if container in web and errors:
            problems.append(f"{container['name']} logged an error: {errors[0][:300]}")
    return problems


def check_linking(stack: Stack) -> list[str]:
    """An author links X as the web frontend does, through the X stand-in container; the callback
    comes back through the frontend's origin (here: the request the frontend's proxy would pass
    on, cookie included). And the name registry stand-in takes a name."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    problems: list[str] = []
    key = Account.create()
    message = f"Link X account for wallet: {key.address}"
    signature = Account.sign_message(encode_defunct(text=message), private_key=key.key).signature.hex()
    browser = requests.Session()
    started = browser.post(
        f"{stack.web_url}/api/authors/x/auth/start",
        json={
            "wallet_address": key.address,
            "message": message,
            "signature": "0x" + signature.removeprefix("0x"),
        },
        timeout=10,
    )
    if started.status_code != 200:
        return [f"X start answered {started.status_code}: {started.text[:200]}"]
    consent = requests.get(started.json()["authorization_url"], allow_redirects=False, timeout=10)
    back = consent.headers.get("Location", "")
    frontend = devnet_settings()["FRONTEND_URL"]
    if consent.status_code != 302 or not back.startswith(f"{frontend}/api/authors/x/callback?"):
        return [
            f"the X stand-in sent the browser to {back!r} ({consent.status_code}), not through {frontend}"
        ]
    # What the frontend's /api rewrite does with that request: the same path and cookie, to web.
    callback = browser.get(f"{stack.web_url}{back[len(frontend) :]}", allow_redirects=False, timeout=10)
    if "x_linked=true&username=glisk_artist" not in callback.headers.get("Location", ""):
        problems.append(f"the X callback answered {callback.status_code} {callback.headers.get('Location')}")
    names = f"http://127.0.0.1:{stack.ports['FNAMES_PORT']}"
    registered = requests.post(f"{names}/transfers", json={"name": "devnet-check", "to": 7}, timeout=10)
    current = requests.get(f"{names}/transfers/current", params={"name": "devnet-check"}, timeout=10)
    if not registered.ok or current.json().get("transfer", {}).get("to") != 7:
        problems.append(f"the name registry stand-in answered {registered.status_code}/{current.status_code}")
    return problems


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3, help="qcluster containers")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds from the last mint to the last reveal"
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running (tear down yourself)")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glisk.settings")
    # A CI timeout's SIGTERM unwinds like Ctrl-C (which a shell's `&` would have us ignore): the
    # stack is torn down, our dockerd stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(options)
    except RunFailed as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted (what this run started is gone)")
        return 130


def _main(options: argparse.Namespace) -> int:
    started = time.monotonic()
    with docker_engine():
        compose = compose_command()
        standins = ensure_base_images()
        build_seconds = build_images()
        stack = Stack(compose=compose, workers=options.workers)
        try:
            return _run(stack, options, standins, build_seconds, started)
        except RunFailed as exc:
            say(f"FAILED: {exc}")
            for service in (
                "migrate",
                "devnet-setup",
                "web",
                "qcluster",
                "relay",
                "replicate",
                "pinata",
                "x",
                "fnames",
                "anvil",
            ):
                say(f"--- last lines of {service} ---")
                print(stack.logs(service), flush=True)
            return 1
        finally:
            if options.keep:
                say(f"left running; tear it down with: {' '.join(stack.command)} down -v")
            else:
                stack.down()
                say("torn down (containers, network, volumes)")


def _run(
    stack: Stack,
    options: argparse.Namespace,
    standins: list[str],
    build_seconds: dict[str, float],
    started: float,
) -> int:
    up_started = time.monotonic()
    stack.up()
    wait_for(
        "web /health",
        lambda: requests.get(f"{stack.web_url}/health", timeout=3).status_code == 200,
        timeout=180,
    )
    up_seconds = time.monotonic() - up_started
    say(f"stack up in {up_seconds:.0f} s: {stack.workers} qcluster containers, web on {stack.web_url}")

    chain, mint_started = mint(stack, options.tokens)
    minted_at = time.time()
    last = [0]

    def all_revealed() -> bool:
        count = revealed_on_chain(chain, options.tokens)
        if count != last[0]:
            say(f"revealed on chain: {count}/{options.tokens}")
            last[0] = count
        return count == options.tokens

    wait_for("every token revealed on chain", all_revealed, timeout=options.timeout, interval=2)
    reveal_seconds = time.time() - mint_started
    after_last_mint = time.time() - minted_at

    audit_run = stack(
        "exec",
        "-T",
        "web",
        "python",
        "manage.py",
        "pipeline_audit",
        "--gateway",
        "http://pinata:8002",
        check=False,
    )
    try:
        audit = json.loads(audit_run.stdout)
    except ValueError:
        raise RunFailed(
            f"the audit printed no summary: {(audit_run.stdout + audit_run.stderr)[-2000:]}"
        ) from None
    problems = [f"audit: {p}" for p in audit["problems"]]
    if audit["revealed"] != options.tokens or audit["checked_content"] != options.tokens:
        problems.append(
            f"audit: {audit['revealed']} revealed, {audit['checked_content']} checked, of {options.tokens}"
        )

    workers = stack.containers("qcluster")
    by_host = {c["hostname"]: c["name"] for c in workers}
    per_container: dict[str, dict[str, int]] = {}
    for machine, stages in audit["stage_work"].items():
        per_container[by_host.get(machine.split("~")[0], machine)] = stages
    busy = [
        name
        for name, stages in per_container.items()
        if sum(stages.values()) > 0 and name in by_host.values()
    ]
    if len(busy) < 2:
        problems.append(f"stage work was done by {len(busy)} qcluster container(s): {per_container}")
    problems += check_image(stack)
    problems += check_linking(stack)

    size = image_size_mb(APP_IMAGE)
    print(flush=True)
    say("summary")
    say(
        "  base images: "
        + ("stand-ins built from Debian: " + ", ".join(standins) if standins else "as found or pulled")
    )
    say(f"  {APP_IMAGE}: {size:.0f} MB, built in {build_seconds[APP_IMAGE]:.0f} s (this run)")
    running = len(stack("ps", "-q").stdout.split())
    say(
        f"  containers: {running} ({stack.workers} qcluster); "
        f"compose up to a healthy web in {up_seconds:.0f} s"
    )
    say(
        f"  tokens: {options.tokens} minted, {audit['revealed']} revealed, {audit['failed']} failed; "
        f"first mint → last reveal {reveal_seconds:.1f} s (last mint → last reveal {after_last_mint:.1f} s)"
    )
    say("  stage work per qcluster container (tokens carried through each stage):")
    for name, stages in sorted(per_container.items()):
        say(f"    {name}: " + ", ".join(f"{stage} {n}" for stage, n in sorted(stages.items())))
    say(
        f"  audit: {audit['checked_content']} tokens checked on chain and through the gateway; "
        f"{len(audit['problems'])} problems"
    )
    if problems:
        for problem in problems:
            say(f"  PROBLEM: {problem}")
        return 1
    say("  linking: X through its stand-in, back through the frontend's origin; a name registered")
    say(f"  PASSED in {_s(time.monotonic() - started)}")
    return 0


def _s(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


if __name__ == "__main__":
    sys.exit(main())
