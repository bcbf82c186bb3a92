"""The web frontend's flow in a real browser against `manage.py devnet` run as docs/frontend.md
tells a frontend developer to run it (DEVNET_CHAIN_ID=84532, FRONTEND_URL on another origin than
the API): headless Chromium with an injected wallet that forwards to anvil connects, checks the
chain, signs a bound prompt update, links X through the stand-in (the callback through the
frontend's origin, where the sign-in cookie lives) and reads tokens in one Multicall3 batch.
A broken Multicall3, chain id setting or X redirect fails it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import requests
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from authors.models import Author, PromptUpdate
from chain.adapter import MULTICALL3, GliskChain
from glisk.devtools import devnet
from glisk.devtools.stack import Stack
from glisk.env import read_env_file
from tests.chain.test_devnet_command import start, wait_for_line
from tests.e2e.conftest import test_database_url
from tests.e2e.frontend_origin import FrontendOrigin

CHROMIUM = "/usr/bin/chromium"
# As the machine's Chromium runs headless offline: no sandbox as root, none of its own traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BASE_SEPOLIA = 84532
SCREENSHOTS = os.environ.get("GLISK_SCREENSHOTS", "")  # a directory to keep them in

WALLET = (Path(__file__).resolve().parent / "browser" / "wallet.js").read_text()


def selector(signature: str) -> str:
    return "0x" + function_signature_to_4byte_selector(signature).hex()


@pytest.fixture
def devnet_for_a_frontend(tmp_path, transactional_db):
    """`manage.py devnet` with the frontend's settings, and the app against it (as `make run`)."""
    frontend_port = devnet.free_port()
    frontend_url = f"http://localhost:{frontend_port}"
    chain_process = start(
        tmp_path, devnet.free_port(), DEVNET_CHAIN_ID=str(BASE_SEPOLIA), FRONTEND_URL=frontend_url
    )
    try:
        wait_for_line(chain_process, "Ctrl-C stops it")
        values = read_env_file(tmp_path / "devnet.env")
        # The settings the app reads from var/devnet.env in development, given as they are.
        with Stack(
            var_dir=tmp_path,
            database_url=test_database_url(),
            extra_env={**values, "NETWORK": "DEVNET", "LOG_LEVEL": "WARNING"},
        ) as stack:
            stack.start_web()
            chain = GliskChain(
                rpc_url=values["DEVNET_ANVIL_URL"],
                contract_address=values["GLISK_NFT_CONTRACT_ADDRESS"],
                chain_id=int(values["DEVNET_CHAIN_ID"]),
            )
            config = {
                "chain_id": BASE_SEPOLIA,  # what the frontend's .env.local names
                "contract": chain.contract_address,
                "multicall3": MULTICALL3,
                "selectors": {
                    "aggregate3": selector("aggregate3((address,bool,bytes)[])"),
                    "tokenURI": selector("tokenURI(uint256)"),
                    "tokenPromptAuthor": selector("tokenPromptAuthor(uint256)"),
                },
            }
            origin = FrontendOrigin(port=frontend_port, backend_url=stack.web_url, config=config).start()
            try:
                yield chain, values["DEVNET_ANVIL_URL"], origin
            finally:
                origin.stop()
    finally:
        chain_process.send_signal(signal.SIGINT)
        chain_process.communicate(timeout=60)


def test_the_frontends_flow_in_chromium_against_the_devnet(devnet_for_a_frontend, tmp_path):
    from playwright.sync_api import sync_playwright

    chain, anvil_url, origin = devnet_for_a_frontend
    assert os.path.exists(CHROMIUM), "make tools installs Debian's chromium"
    accounts = devnet.dev_accounts(chain)
    author = to_checksum_address(accounts[5])
    devnet.mint(chain, minter=accounts[2], prompt_author=author, quantity=2)
    wallet_calls: list[tuple[str, list]] = []

    def wallet_rpc(_source, method: str, params: list):
        """The wallet: its account, and everything else forwarded to anvil (which signs for
        its unlocked dev accounts)."""
        wallet_calls.append((method, params))
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [author]
        answer = requests.post(
            anvil_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10
        ).json()
        if "error" in answer:
            raise RuntimeError(answer["error"].get("message", "rpc error"))
        return answer["result"]

    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 700})
            context.expose_binding("gliskWalletRpc", wallet_rpc)
            context.add_init_script(WALLET)
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(origin.url)
            page.wait_for_selector("body[data-ready=true]")

            page.click("#connect")
            page.wait_for_selector("#wallet.ok, #wallet.bad")
            assert page.inner_text("#wallet") == f"{author} on chain {BASE_SEPOLIA}"

            page.click("#save")
            page.wait_for_selector("#saved.ok, #saved.bad")
            assert page.inner_text("#saved") == "prompt saved (bound message)", page.inner_text("#saved")
            profile = requests.get(f"{origin.url}/api/authors/{author}", timeout=10).json()
            assert profile["has_prompt"] is True

            page.fill("#token-ids", f"{chain.next_token_id() - 2},{chain.next_token_id() - 1}")
            before = len(wallet_calls)
            page.click("#tokens")
            page.wait_for_selector("#token-list li")
            items = page.locator("#token-list li").all_inner_texts()
            assert items == [
                f"#{chain.next_token_id() - 2} ipfs://placeholder by {author.lower()}",
                f"#{chain.next_token_id() - 1} ipfs://placeholder by {author.lower()}",
            ], items
            reads = [params[0]["to"] for method, params in wallet_calls[before:] if method == "eth_call"]
            assert reads == [MULTICALL3]  # four reads, one call
            page.screenshot(path=str(shots / "1-connected-prompt-tokens.png"), full_page=True)

            page.click("#link-x")
            page.wait_for_url(f"{origin.url}/profile?**")
            page.wait_for_selector("#x.ok, #x.bad")
            assert page.inner_text("#x") == "X linked: @glisk_artist", page.inner_text("#x")
            profile = requests.get(f"{origin.url}/api/authors/{author}", timeout=10).json()
            assert profile["twitter_handle"] == "glisk_artist"
            page.screenshot(path=str(shots / "2-x-linked.png"), full_page=True)
        finally:
            browser.close()
    # (The database is read once the browser's event loop is closed.)
    assert PromptUpdate.objects.get(author__wallet_address=author).form == "bound"
    assert Author.objects.get(wallet_address=author).prompt_text == "A lighthouse in a storm, oil on canvas"
    # The API was only ever reached through the frontend's origin, and answered each call.
    assert [(m, p) for m, p, status in origin.api_calls if status >= 400] == [], origin.api_calls
    assert ("GET", "/api/authors/x/callback", 307) in origin.api_calls
    assert not [line for line in console if line.startswith("error")], console
    (shots / "api-calls.json").write_text(json.dumps(origin.api_calls, indent=1))
