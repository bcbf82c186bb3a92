"""The pieces the container deployment runs, each on its own (`make test-containers` runs them all
together in containers): the devnet profile's settings against a real anvil, the provider
stand-ins as servers of their own, gunicorn's JSON access log, the image's static manifest, and
the history that says which machine did a stage's work."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from eth_account import Account

from chain import abi
from chain.adapter import GliskChain
from glisk.backoffice.audit import stage_work_by_machine
from glisk.core.machine import machine_name
from glisk.devtools import devnet
from glisk.env import read_env_file
from glisk.logging import gunicorn_logging_config
from lifecycle.models import TokenTransition
from lifecycle.providers.images import LocalImageProvider
from lifecycle.services.stages import image_stage_run
from tests.e2e.conftest import test_database_url
from tests.factories import TokenFactory

ROOT = Path(__file__).resolve().parents[2]
DEVNET_ENV = read_env_file(ROOT / "deploy" / "devnet" / "devnet.env")


def container_env(**overrides: str) -> dict[str, str]:
    """What a container of the devnet profile sees: production mode and deploy/devnet/devnet.env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "GLISK_", "DJANGO"))}
    env.update(DEVNET_ENV)
    env.update(
        APP_ENV="production",
        DATABASE_URL="postgresql://glisk:unused@127.0.0.1:1/glisk",  # these commands never connect
        GLISK_VAR_DIR=str(Path(os.environ.get("GLISK_VAR_DIR", ROOT / "var")) / "container-parts"),
        DJANGO_SETTINGS_MODULE="glisk.settings",
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def anvil():
    port = devnet.free_port()
    process = devnet.start_anvil(port=port, accounts=20)
    yield f"http://127.0.0.1:{port}"
    devnet.stop_process(process)


def test_devnet_setup_puts_the_contract_where_the_devnet_profile_says_and_is_idempotent(anvil):
    env = container_env(RPC_URL=anvil, FARCASTER_RPC_URL=anvil)
    first = manage("devnet_setup", "--wait", "10", env=env)
    assert first.returncode == 0, first.stderr
    assert f"GliskNFT deployed at {DEVNET_ENV['GLISK_NFT_CONTRACT_ADDRESS']}" in first.stdout
    assert DEVNET_ENV["KEEPER_PRIVATE_KEY"] not in first.stdout + first.stderr

    address = DEVNET_ENV["GLISK_NFT_CONTRACT_ADDRESS"]
    chain = GliskChain(rpc_url=anvil, contract_address=address, chain_id=devnet.DEVNET_CHAIN_ID)
    keeper = Account.from_key(DEVNET_ENV["KEEPER_PRIVATE_KEY"]).address
    (has_role,) = chain.call(
        "hasRole", ["bytes32", "address"], [bytes.fromhex(abi.KEEPER_ROLE[2:]), keeper], ["bool"]
    )
    assert has_role
    assert int(chain.rpc("eth_getBalance", [keeper, "latest"]), 16) > 0
    assert devnet.has_contract(chain, DEVNET_ENV["FARCASTER_ID_REGISTRY"])

    again = manage("devnet_setup", "--wait", "10", env=env)
    assert again.returncode == 0, again.stderr
    assert "already at" in again.stdout
    assert chain.next_token_id() == 1


def test_devnet_setup_names_the_addresses_when_the_chain_is_not_new(anvil):
    bare = GliskChain(rpc_url=anvil, contract_address="", chain_id=devnet.DEVNET_CHAIN_ID)
    accounts = devnet.dev_accounts(bare)
    devnet.send_and_wait(bare, {"from": accounts[0], "to": accounts[1], "value": hex(1)})  # nonce 0 used
    failed = manage("devnet_setup", "--wait", "10", env=container_env(RPC_URL=anvil, FARCASTER_RPC_URL=anvil))
    assert failed.returncode == 1
    assert f"GLISK_NFT_CONTRACT_ADDRESS is {DEVNET_ENV['GLISK_NFT_CONTRACT_ADDRESS']}" in failed.stderr
    assert "the deployer has sent 1 transactions on this chain: start from a new chain" in failed.stderr
    assert int(bare.rpc("eth_getTransactionCount", [accounts[0], "latest"]), 16) == 1  # nothing deployed


def test_devnet_setup_deploys_nothing_to_an_address_the_deployer_cannot_reach(anvil):
    wrong = "0x" + "12" * 20
    env = container_env(RPC_URL=anvil, FARCASTER_RPC_URL=anvil, GLISK_NFT_CONTRACT_ADDRESS=wrong)
    failed = manage("devnet_setup", "--wait", "10", env=env)
    assert failed.returncode == 1
    assert "it is not the deployer's first contract address" in failed.stderr
    bare = GliskChain(rpc_url=anvil, contract_address="", chain_id=devnet.DEVNET_CHAIN_ID)
    assert int(bare.rpc("eth_getTransactionCount", [devnet.dev_accounts(bare)[0], "latest"]), 16) == 0


def test_devnet_setup_waits_for_the_chain_then_says_it_is_not_answering():
    port = devnet.free_port()
    started = time.monotonic()
    failed = manage("devnet_setup", "--wait", "2", env=container_env(RPC_URL=f"http://127.0.0.1:{port}"))
    assert failed.returncode == 1
    assert "did not answer within 2 s" in failed.stderr
    assert time.monotonic() - started >= 2


@pytest.fixture
def standin_process():
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> str:
        port = devnet.free_port()
        process = subprocess.Popen(
            [sys.executable, "manage.py", "standin", *args, "--port", str(port)],
            cwd=ROOT,
            env=container_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "stand-in on" in line, line
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def test_the_pinata_standin_serves_its_pins_through_a_gateway(standin_process):
    url = standin_process("pinata")
    jwt = DEVNET_ENV["PINATA_JWT"]
    refused = requests.post(f"{url}/pinning/pinFileToIPFS", files={"file": ("a", b"x")}, timeout=5)
    assert refused.status_code == 401
    pinned = requests.post(
        f"{url}/pinning/pinFileToIPFS",
        headers={"Authorization": f"Bearer {jwt}"},
        files={"file": ("hello.txt", b"hello world\n")},
        timeout=5,
    )
    assert pinned.json()["IpfsHash"] == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    served = requests.get(f"{url}/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", timeout=5)
    assert (served.status_code, served.content) == (200, b"hello world\n")
    assert requests.get(f"{url}/ipfs/QmNotPinned", timeout=5).status_code == 404


def test_the_replicate_standin_hands_out_file_urls_on_its_public_address(standin_process):
    url = standin_process("replicate", "--public-url", "http://replicate.internal:8001")
    created = requests.post(
        f"{url}/v1/models/black-forest-labs/flux-schnell/predictions",
        headers={"Authorization": f"Bearer {DEVNET_ENV['REPLICATE_API_TOKEN']}", "Prefer": "wait=5"},
        json={"input": {"prompt": "a fox"}},
        timeout=10,
    )
    assert created.status_code in (200, 201), created.text
    prediction = created.json()
    assert prediction["status"] == "succeeded"
    assert prediction["output"][0].startswith("http://replicate.internal:8001/files/")


def test_the_standin_refuses_to_start_without_the_credential_it_checks():
    env = container_env(APP_ENV="development", IPFS_PROVIDER="local", PINATA_JWT="")
    failed = manage("standin", "pinata", env=env)
    assert failed.returncode == 1
    assert "set PINATA_JWT" in failed.stderr


def test_gunicorn_access_lines_are_json_events_without_query_strings():
    stream = io.StringIO()
    config = gunicorn_logging_config(level="INFO", json_output=True)
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        atoms = {"m": "GET", "U": "/api/authors/x/callback", "q": "code=abc&state=xyz", "s": "302", "B": "0"}
        atoms |= {"M": "12", "h": "10.0.0.7"}
        logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', atoms)
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 7)
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    access, booting = (json.loads(line) for line in stream.getvalue().splitlines())
    assert access["event"] == "http.request"
    assert (access["method"], access["path"], access["status"], access["duration_ms"]) == (
        "GET",
        "/api/authors/x/callback",
        302,
        12,
    )
    assert "abc" not in stream.getvalue() and "xyz" not in stream.getvalue()
    assert booting["event"] == "Booting worker with pid: 7"


def test_an_image_build_collects_static_files_with_the_manifest_production_reads(tmp_path):
    env = container_env(
        APP_ENV="development", STATIC_MANIFEST="1", GLISK_VAR_DIR=str(tmp_path), NETWORK="BASE_SEPOLIA"
    )
    collected = manage("collectstatic", "--no-input", "--verbosity", "0", env=env)
    assert collected.returncode == 0, collected.stderr
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
    assert "admin/css/base.css" in manifest["paths"]


@pytest.mark.django_db
def test_the_history_names_the_machine_that_did_each_stage():
    tokens = TokenFactory.create_batch(3)
    worker = f"{machine_name()}:4242:abcd1234"
    report = image_stage_run(worker_id=worker, budget_seconds=5, provider=LocalImageProvider())
    assert report.succeeded == 3
    moved = TokenTransition.objects.filter(token__in=tokens, to_status="uploading")
    assert {t.detail["worker"] for t in moved} == {worker}
    assert stage_work_by_machine() == {machine_name(): {"image": 3}}


def test_a_worker_waits_for_the_database_and_says_what_it_waits_for():
    port = devnet.free_port()  # nothing listens there
    env = container_env(
        APP_ENV="development",
        NETWORK="BASE_SEPOLIA",
        IMAGE_PROVIDER="local",
        IPFS_PROVIDER="local",
        DATABASE_URL=f"postgresql://glisk:x@127.0.0.1:{port}/glisk",
    )
    started = time.monotonic()
    failed = manage("qcluster", "--wait-for-database", "3", env=env)
    assert failed.returncode == 1
    assert "gave up after waiting 3 s: the database is not reachable (OperationalError)" in failed.stderr
    assert "qcluster.waiting" in failed.stderr
    assert "127.0.0.1" not in failed.stderr.split("qcluster.waiting")[1].splitlines()[0]
    assert time.monotonic() - started >= 3


@pytest.mark.django_db(transaction=True)
def test_a_worker_waits_for_migrations_on_a_database_without_them():
    import psycopg
    from django.db import connection

    name = "glisk_unmigrated_test"
    admin_url = test_database_url().replace(f"/{connection.settings_dict['NAME']}", "/postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = container_env(
            APP_ENV="development",
            NETWORK="BASE_SEPOLIA",
            IMAGE_PROVIDER="local",
            IPFS_PROVIDER="local",
            DATABASE_URL=test_database_url().replace(f"/{connection.settings_dict['NAME']}", f"/{name}"),
        )
        failed = manage("qcluster", "--wait-for-database", "2", env=env)
        assert failed.returncode == 1
        assert "gave up after waiting 2 s: the database lacks " in failed.stderr
        assert "migrations (run `manage.py migrate`)" in failed.stderr
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db(transaction=True)
def test_a_worker_stops_at_once_when_waiting_cannot_help():
    from django.db import connection

    env = container_env(
        APP_ENV="development",
        NETWORK="BASE_SEPOLIA",
        IMAGE_PROVIDER="local",
        IPFS_PROVIDER="local",
        DATABASE_URL=test_database_url().replace(f"/{connection.settings_dict['NAME']}", "/glisk_no_such_db"),
    )
    started = time.monotonic()
    failed = manage("qcluster", "--wait-for-database", "60", env=env)
    assert failed.returncode == 1
    assert "the database named in the URL does not exist: check DATABASE_URL" in failed.stderr
    assert time.monotonic() - started < 30
    assert "glisk_no_such_db" not in failed.stderr


def test_database_problems_are_told_without_the_drivers_text():
    from django.db import OperationalError

    from glisk.core.database import database_problem

    refused = OperationalError(
        'connection to server at "db.internal" (10.0.0.5), port 5432 failed: FATAL:  '
        'password authentication failed for user "glisk"'
    )
    assert (
        database_problem(refused) == "the database refused the credentials (password authentication failed)"
    )
    assert database_problem(OperationalError("timeout expired")) == (
        "the database is not reachable (OperationalError)"
    )


def test_the_x_and_name_registry_stand_ins_serve_the_devnet_profile():
    """`manage.py standin x|fnames` as their containers run them (production mode, the devnet
    profile's settings): X consents for the app's client and sends the browser back through the
    frontend's origin; the registry takes a name."""
    import requests

    from glisk.devtools.stack import wait_until

    started = []
    try:
        urls = {}
        for provider in ("x", "fnames"):
            port = devnet.free_port()
            process = subprocess.Popen(
                [sys.executable, "manage.py", "standin", provider, "--port", str(port)],
                cwd=ROOT,
                env=container_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            started.append(process)
            assert "stand-in on" in process.stdout.readline()
            urls[provider] = f"http://127.0.0.1:{port}"
        query = {
            "response_type": "code",
            "client_id": DEVNET_ENV["X_CLIENT_ID"],
            "redirect_uri": DEVNET_ENV["X_REDIRECT_URI"],
            "scope": "users.read tweet.read",
            "state": "s" * 43,
            "code_challenge": "c" * 43,
            "code_challenge_method": "S256",
        }
        consent = requests.get(
            f"{urls['x']}/i/oauth2/authorize", params=query, allow_redirects=False, timeout=5
        )
        assert consent.status_code == 302
        assert consent.headers["Location"].startswith(f"{DEVNET_ENV['FRONTEND_URL']}/api/authors/x/callback?")
        assert wait_until(
            lambda: requests.post(f"{urls['fnames']}/transfers", json={"name": "al", "to": 3}, timeout=5).ok,
            timeout=10,
        )
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)
    refused = manage("standin", "x", env=container_env(X_CLIENT_ID="", X_CLIENT_SECRET=""))
    assert refused.returncode == 1 and "set X_CLIENT_ID and X_CLIENT_SECRET" in refused.stderr


def test_devnet_setup_deploys_only_to_an_anvil_chain():
    """A node that is not anvil (here: one that says it is geth, on the devnet's chain id) gets
    nothing: "anvil's first account" means something only on a chain of our own."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Node(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answers = {"eth_chainId": hex(devnet.DEVNET_CHAIN_ID), "web3_clientVersion": "Geth/v1.14.0"}
            body = json.dumps(
                {"jsonrpc": "2.0", "id": request["id"], "result": answers.get(request["method"])}
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        refused = manage("devnet_setup", "--wait", "5", env=container_env(RPC_URL=url, FARCASTER_RPC_URL=url))
    finally:
        server.shutdown()
    assert refused.returncode == 1 and "does not serve an anvil devnet (Geth/v1.14.0)" in refused.stderr
