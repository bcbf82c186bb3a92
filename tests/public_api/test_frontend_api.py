"""The web frontend's API, called the way the frontend calls it: real HTTP to a live server for
the contract, wallets of every kind on anvil for the signatures."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
import requests
from django.core.cache import cache
from django.utils import timezone

from authors.messages import prompt_sha256, static_prompt_message
from authors.models import Author, PromptNonce, PromptUpdate
from glisk.public_api.throttles import PromptClientThrottle, PromptWalletThrottle
from lifecycle.models import Token
from tests.factories import AuthorFactory, RevealTransactionFactory, TokenFactory
from tests.public_api.wallets import counterfactual_wallet, deployed_wallet, eoa, factory_contract

PROMPT = "Neon koi fish swimming through a rainy Tokyo alley"


@pytest.fixture(autouse=True)
def _fresh_throttles(django_db_blocker):
    # The database cache is no model's table: a flush leaves it, so each test starts it empty.
    with django_db_blocker.unblock():
        cache.clear()


def body_for(wallet, prompt=PROMPT, *, message=None, signature=None, key=None):
    message = message if message is not None else static_prompt_message(wallet.address)
    return {
        "wallet_address": wallet.address,
        "prompt_text": prompt,
        "message": message,
        "signature": signature if signature is not None else wallet.sign(message, key=key),
    }


# --- the read contract over real HTTP ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_frontends_reads_over_http(live_server, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, ipfs_provider="local")
    base = f"{live_server.url}/api/authors"
    busy = AuthorFactory.create()
    quiet = AuthorFactory.create(prompt_text=None, twitter_handle="quietone")
    for i in range(1, 4):
        TokenFactory.create(
            token_id=i, author=busy, status="revealed", image_cid=f"bafkimg{i}", metadata_cid="bafkm"
        )
    TokenFactory.create(
        token_id=4,
        author=busy,
        status="failed",
        failed_stage="generating",
        image_attempts=3,
        last_error="replicate: NSFW",
    )
    TokenFactory.create(token_id=5, author=quiet, status="detected")
    tx = RevealTransactionFactory.create(status="confirmed", token_ids=[3])
    Token.objects.filter(pk=3).update(reveal_transaction=tx)

    board = requests.get(f"{base}/leaderboard", timeout=10)
    assert board.status_code == 200 and isinstance(board.json(), list)
    assert board.json() == [
        {"author_address": busy.wallet_address, "total_tokens": 4},
        {"author_address": quiet.wallet_address, "total_tokens": 1},
    ]

    page = requests.get(f"{base}/{busy.wallet_address.lower()}/tokens?offset=0&limit=20", timeout=10).json()
    assert (page["total"], page["offset"], page["limit"]) == (4, 0, 20)
    assert [t["token_id"] for t in page["tokens"]] == [4, 3, 2, 1]  # newest first
    failed, revealed = page["tokens"][0], page["tokens"][1]
    assert set(failed) == {
        "token_id",
        "status",
        "image_cid",
        "metadata_cid",
        "image_url",
        "generation_attempts",
        "generation_error",
        "reveal_tx_hash",
        "created_at",
    }
    assert failed["status"] == "failed" and failed["generation_attempts"] == 3
    assert failed["generation_error"] == "replicate: NSFW" and failed["image_url"] is None
    assert revealed["status"] == "revealed" and revealed["reveal_tx_hash"] == tx.tx_hash
    assert (
        revealed["image_url"] == f"{live_server.url}/ipfs/bafkimg3" and revealed["generation_error"] is None
    )
    only_limit = requests.get(f"{base}/{busy.wallet_address}/tokens?limit=100", timeout=10).json()
    assert only_limit["limit"] == 100 and only_limit["offset"] == 0 and len(only_limit["tokens"]) == 4
    second = requests.get(f"{base}/{busy.wallet_address}/tokens?offset=1&limit=2", timeout=10).json()
    assert [t["token_id"] for t in second["tokens"]] == [3, 2]

    nobody = requests.get(f"{base}/0x{'ab' * 20}/tokens", timeout=10)
    assert nobody.status_code == 200 and nobody.json() == {"tokens": [], "total": 0, "offset": 0, "limit": 20}
    bad = requests.get(f"{base}/{busy.wallet_address}/tokens?limit=101", timeout=10)
    assert bad.status_code == 400 and "limit" in bad.json()["detail"]

    assert requests.get(f"{base}/{busy.wallet_address}", timeout=10).json() == {
        "has_prompt": True,
        "twitter_handle": None,
        "farcaster_handle": None,
    }
    assert requests.get(f"{base}/{quiet.wallet_address.lower()}", timeout=10).json() == {
        "has_prompt": False,
        "twitter_handle": "quietone",
        "farcaster_handle": None,
    }
    for unknown in (f"0x{'cd' * 20}", "not-a-wallet"):
        answer = requests.get(f"{base}/{unknown}", timeout=10)
        assert answer.status_code == 200 and answer.json()["has_prompt"] is False


@pytest.mark.django_db(transaction=True)
def test_a_prompt_update_over_http_is_accepted_and_never_echoed(live_server, chain):
    wallet = eoa()
    base = f"{live_server.url}/api/authors"
    response = requests.post(f"{base}/prompt", json=body_for(wallet), timeout=10)
    assert response.status_code == 200 and response.json() == {"success": True, "has_prompt": True}
    status = requests.get(f"{base}/{wallet.address}", timeout=10)
    assert status.json()["has_prompt"] is True
    for answer in (response, status, requests.get(f"{base}/{wallet.address}/tokens", timeout=10)):
        assert PROMPT not in answer.text
    assert Author.objects.get(wallet_address=wallet.address).prompt_text == PROMPT


def test_the_leaderboard_holds_at_most_fifty(client, db):
    for n in range(55):
        TokenFactory.create(token_id=n + 1, author=AuthorFactory.create())
    assert len(client.get("/api/authors/leaderboard").json()) == 50


# --- signatures of every wallet kind ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["eoa", "erc1271", "erc6492"])
def test_each_wallet_kind_can_set_its_prompt_and_no_other_key_can(client, chain, accounts, kind):
    if kind == "eoa":
        wallet = eoa()
    elif kind == "erc1271":
        wallet = deployed_wallet(chain, accounts[0])
    else:
        wallet = counterfactual_wallet(chain, factory_contract(chain, accounts[0]))
    intruder = eoa()
    refused = client.post("/api/authors/prompt", body_for(wallet, key=intruder.owner_key), "application/json")
    assert refused.status_code == 403 and "does not match this wallet" in refused.json()["detail"]
    assert not Author.objects.filter(wallet_address=wallet.address, prompt_text__isnull=False).exists()

    accepted = client.post("/api/authors/prompt", body_for(wallet), "application/json")
    assert accepted.status_code == 200, accepted.json()
    update = PromptUpdate.objects.get(author__wallet_address=wallet.address)
    assert (update.form, update.signature_kind) == ("static", kind)
    assert update.prompt_sha256 == prompt_sha256(PROMPT)
    if kind == "erc6492":  # the check deployed nothing: the wallet still has no code
        assert chain.rpc("eth_getCode", [wallet.address, "latest"]) in ("0x", "0x0")


@pytest.mark.django_db
def test_an_unreachable_chain_is_503_for_contract_wallets_only(client, chain, accounts, settings):
    contract_wallet = deployed_wallet(chain, accounts[0])
    settings.GLISK = dataclasses.replace(settings.GLISK, rpc_url="http://127.0.0.1:9", rpc_timeout_seconds=1)
    down = client.post("/api/authors/prompt", body_for(contract_wallet), "application/json")
    assert down.status_code == 503 and down.headers["Retry-After"] and down.json()["detail"]
    assert client.post("/api/authors/prompt", body_for(eoa()), "application/json").status_code == 200


# --- the bound, replay-proof form --------------------------------------------------------------


def bound_message(client, wallet, prompt=PROMPT):
    issued = client.get(f"/api/authors/{wallet.address}/nonce").json()
    return issued, issued["message_template"].replace("{prompt_sha256}", prompt_sha256(prompt))


@pytest.mark.django_db
def test_a_bound_update_works_once(client, chain, settings):
    wallet = eoa()
    issued, message = bound_message(client, wallet)
    assert issued["chain_id"] == settings.GLISK.chain_id and wallet.address in message
    first = client.post("/api/authors/prompt", body_for(wallet, message=message), "application/json")
    assert first.status_code == 200
    assert PromptUpdate.objects.get().form == "bound" and PromptUpdate.objects.get().nonce == issued["nonce"]
    replay = client.post("/api/authors/prompt", body_for(wallet, message=message), "application/json")
    assert replay.status_code == 400 and "already used" in replay.json()["detail"]


@pytest.mark.django_db
def test_a_bound_update_refuses_what_it_does_not_name(client, chain):
    wallet = eoa()
    _, message = bound_message(client, wallet)
    other_prompt = client.post(
        "/api/authors/prompt", body_for(wallet, "another prompt", message=message), "application/json"
    )
    assert other_prompt.status_code == 400 and "prompt hash" in other_prompt.json()["detail"]
    other_chain = message.replace("Chain ID: 31337", "Chain ID: 8453")
    answer = client.post("/api/authors/prompt", body_for(wallet, message=other_chain), "application/json")
    assert answer.status_code == 400 and "chain 8453" in answer.json()["detail"]
    past = (timezone.now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = "\n".join(
        f"Expires At: {past}" if line.startswith("Expires At:") else line for line in message.split("\n")
    )
    answer = client.post("/api/authors/prompt", body_for(wallet, message=expired), "application/json")
    assert answer.status_code == 400 and "expired" in answer.json()["detail"]
    PromptNonce.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = client.post("/api/authors/prompt", body_for(wallet, message=message), "application/json")
    assert answer.status_code == 400 and "expired or already used" in answer.json()["detail"]
    assert not PromptUpdate.objects.exists()


@pytest.mark.django_db
def test_the_static_message_can_be_turned_off(client, chain, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, author_accept_static_message=False)
    wallet = eoa()
    refused = client.post("/api/authors/prompt", body_for(wallet), "application/json")
    assert refused.status_code == 400 and "bound message" in refused.json()["detail"]
    _, message = bound_message(client, wallet)
    assert (
        client.post("/api/authors/prompt", body_for(wallet, message=message), "application/json").status_code
        == 200
    )


# --- refusals: 4xx with detail, never 500 -----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"wallet_address": "0x1234"}, 400, "wallet_address must be"),
        ({"signature": "zz"}, 403, "hex"),
        ({"signature": "0x1234"}, 403, "does not match"),
        ({"prompt_text": "   "}, 400, "1 to 1000"),
        ({"prompt_text": "x" * 1001}, 400, "1 to 1000"),
        ({"message": "Update GLISK prompt for wallet: 0xnope"}, 400, "message must be exactly"),
        ({"wallet_address": None}, 400, "wallet_address"),
    ],
)
def test_malformed_updates_are_refused_with_a_reason(client, chain, change, status, words):
    wallet = eoa()
    body = {**body_for(wallet), **change}
    answer = client.post("/api/authors/prompt", body, "application/json")
    assert answer.status_code == status, answer.json()
    assert words in answer.json()["detail"]
    assert not PromptUpdate.objects.exists()


def test_a_body_that_is_not_json_is_a_400(client, db):
    answer = client.post("/api/authors/prompt", "{nope", "application/json")
    assert answer.status_code == 400 and answer.json()["detail"]


# --- throttling, CORS, the admin --------------------------------------------------------------


@pytest.mark.django_db
def test_updates_are_throttled_per_wallet_and_per_client(client, chain, monkeypatch):
    monkeypatch.setitem(PromptWalletThrottle.THROTTLE_RATES, "prompt_wallet", "2/hour")
    wallet = eoa()
    codes = [
        client.post("/api/authors/prompt", body_for(wallet), "application/json").status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    # Requests in a wallet's name that do not verify use none of its allowance.
    cache.clear()
    intruder = eoa()
    for _ in range(3):
        client.post("/api/authors/prompt", body_for(wallet, key=intruder.owner_key), "application/json")
    assert client.post("/api/authors/prompt", body_for(wallet), "application/json").status_code == 200

    monkeypatch.setitem(PromptClientThrottle.THROTTLE_RATES, "prompt_client", "3/hour")
    cache.clear()
    codes = [
        client.post("/api/authors/prompt", body_for(eoa()), "application/json").status_code for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    assert (
        "throttled"
        in client.post("/api/authors/prompt", body_for(eoa()), "application/json").json()["detail"]
    )


def test_cors_allows_the_configured_frontend_origin(client, settings, db):
    settings.CORS_ALLOWED_ORIGINS = ["https://glisk.example"]
    preflight = client.options(
        "/api/authors/prompt",
        HTTP_ORIGIN="https://glisk.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://glisk.example"
    other = client.get("/api/authors/leaderboard", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.django_db
def test_the_author_page_shows_the_prompt_history(admin_client, client, chain):
    wallet = eoa()
    client.post("/api/authors/prompt", body_for(wallet), "application/json")
    author = Author.objects.get(wallet_address=wallet.address)
    page = admin_client.get(f"/admin/authors/author/{author.pk}/change/").content.decode()
    assert "prompt updates" in page.lower() and prompt_sha256(PROMPT) in page and ">eoa<" in page


# --- found by review ---------------------------------------------------------------------------


def test_an_offset_past_any_table_is_a_400_not_a_500(client, db):
    answer = client.get(f"/api/authors/0x{'ab' * 20}/tokens?offset=99999999999999999999")
    assert answer.status_code == 400 and "offset" in answer.json()["detail"]


def test_leaderboard_ties_are_ordered_by_the_address_in_lower_case(client, db):
    upper = AuthorFactory.create(wallet_address="0xA87B" + "0" * 36)
    lower = AuthorFactory.create(wallet_address="0xa234" + "0" * 36)
    TokenFactory.create(token_id=1, author=upper)
    TokenFactory.create(token_id=2, author=lower)
    board = client.get("/api/authors/leaderboard").json()
    assert [row["author_address"] for row in board] == [lower.wallet_address, upper.wallet_address]


@pytest.mark.django_db
def test_throttled_answers_say_when_to_retry_and_survive_a_full_cache(client, chain, monkeypatch):
    monkeypatch.setitem(PromptClientThrottle.THROTTLE_RATES, "prompt_client", "2/hour")
    wallet = eoa()
    assert [client.get(f"/api/authors/{wallet.address}/nonce").status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    throttled = client.get(f"/api/authors/{wallet.address}/nonce")
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    for n in range(400):  # past Django's default MAX_ENTRIES, which would cull throttle counts
        cache.set(f"filler:{n}", n, 3600)
    assert client.get(f"/api/authors/{wallet.address}/nonce").status_code == 429


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_slip_past_the_throttle(live_server, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setitem(PromptClientThrottle.THROTTLE_RATES, "prompt_client", "3/hour")
    url = f"{live_server.url}/api/authors/{eoa().address}/nonce"
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda _: requests.get(url, timeout=20).status_code, range(12)))
    assert codes.count(200) == 3 and codes.count(429) == 9


@pytest.mark.django_db
def test_replaying_a_used_signature_does_not_use_up_the_wallets_allowance(client, chain, monkeypatch):
    monkeypatch.setitem(PromptWalletThrottle.THROTTLE_RATES, "prompt_wallet", "2/hour")
    wallet = eoa()
    _, message = bound_message(client, wallet)
    used = body_for(wallet, message=message)
    assert client.post("/api/authors/prompt", used, "application/json").status_code == 200
    replays = [client.post("/api/authors/prompt", used, "application/json").status_code for _ in range(5)]
    assert replays == [400] * 5
    _, fresh = bound_message(client, wallet)
    assert (
        client.post("/api/authors/prompt", body_for(wallet, message=fresh), "application/json").status_code
        == 200
    )


@pytest.mark.django_db
def test_a_bound_hash_covers_the_prompt_as_typed_and_the_stored_prompt_is_trimmed(client, chain):
    wallet = eoa()
    typed = "  A koi fish\n"
    _, message = bound_message(client, wallet, typed)
    answer = client.post("/api/authors/prompt", body_for(wallet, typed, message=message), "application/json")
    assert answer.status_code == 200, answer.json()
    assert Author.objects.get(wallet_address=wallet.address).prompt_text == "A koi fish"


@pytest.mark.django_db
@pytest.mark.parametrize("prompt", [12345, 1e300, None, ["a"]])
def test_a_prompt_must_be_a_string(client, chain, prompt):
    answer = client.post(
        "/api/authors/prompt", {**body_for(eoa()), "prompt_text": prompt}, "application/json"
    )
    assert answer.status_code == 400 and "prompt_text" in answer.json()["detail"]


def test_a_large_body_is_refused_unread(client, db):
    body = {
        "wallet_address": "0x" + "ab" * 20,
        "prompt_text": "x" * 100_000,
        "message": "m",
        "signature": "0x00",
    }
    answer = client.post("/api/authors/prompt", body, "application/json")
    assert answer.status_code == 413 and answer.json()["detail"]


@pytest.mark.django_db
def test_an_rpc_that_refuses_us_is_503_not_a_wrong_signature(client, chain, accounts, settings):
    """A bad RPC key (HTTP 401) is the chain not answering, not the wallet saying no."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Refuses(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wallet = deployed_wallet(chain, accounts[0])
        settings.GLISK = dataclasses.replace(settings.GLISK, rpc_url=f"http://127.0.0.1:{server.server_port}")
        answer = client.post("/api/authors/prompt", body_for(wallet), "application/json")
        assert answer.status_code == 503 and "retry" in answer.json()["detail"]
    finally:
        server.shutdown()


def test_old_nonces_are_pruned(db):
    from authors.services import prompt_nonce_issue, prompt_nonces_prune

    old = prompt_nonce_issue(wallet="0x" + "ab" * 20, ttl_seconds=60)
    PromptNonce.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=2))
    fresh = prompt_nonce_issue(wallet="0x" + "ab" * 20, ttl_seconds=60)
    assert prompt_nonces_prune() == 1
    assert list(PromptNonce.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_an_empty_paging_value_is_a_400(client, db):
    answer = client.get(f"/api/authors/0x{'ab' * 20}/tokens?limit=&offset=0")
    assert answer.status_code == 400 and "limit" in answer.json()["detail"]


def test_the_profile_of_a_wallet_named_prompt_is_no_prompt(client, db):
    answer = client.get("/api/authors/prompt")
    assert answer.status_code == 200 and answer.json()["has_prompt"] is False


# --- the token list under polling --------------------------------------------------------------


@pytest.fixture
def token_pages():
    from glisk.public_api.views import TOKEN_PAGES

    TOKEN_PAGES._entries.clear()
    yield TOKEN_PAGES
    TOKEN_PAGES._entries.clear()


def test_a_token_list_is_one_statement_and_renders_what_the_schema_names(client, db, token_pages):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from glisk.public_api.views import FrontendToken

    author = AuthorFactory.create()
    for token_id, status, stage, error in (
        (1, "revealed", "", ""),
        (2, "failed", "generating", "replicate: NSFW"),
        (3, "failed", "uploading", "pinata: 500"),
        (4, "generating", "", "replicate: timeout, retrying"),
        (5, "uploading", "", "pinata: 502, retrying"),
    ):
        TokenFactory.create(
            token_id=token_id, author=author, status=status, failed_stage=stage, last_error=error
        )
    TokenFactory.create(token_id=6)  # someone else's
    tx = RevealTransactionFactory.create(status="confirmed", token_ids=[1])
    Token.objects.filter(pk=1).update(reveal_transaction=tx)

    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/api/authors/{author.wallet_address.upper().replace('0X', '0x')}/tokens?limit=20")
    assert page.status_code == 200
    assert len(queries.captured_queries) == 1  # the page and its total together
    body = page.json()
    assert body["total"] == 5 and [t["token_id"] for t in body["tokens"]] == [5, 4, 3, 2, 1]
    assert all(set(t) == set(FrontendToken().fields) for t in body["tokens"])
    errors = {t["token_id"]: t["generation_error"] for t in body["tokens"]}
    # Only the image stage's errors are generation errors: while in it, or failed there.
    assert errors == {5: None, 4: "replicate: timeout, retrying", 3: None, 2: "replicate: NSFW", 1: None}
    assert body["tokens"][-1]["reveal_tx_hash"] == tx.tx_hash
    assert body["tokens"][-1]["created_at"].endswith("Z")

    past_the_end = client.get(f"/api/authors/{author.wallet_address}/tokens?offset=7&limit=2").json()
    assert (past_the_end["tokens"], past_the_end["total"]) == ([], 5)
    last = client.get(f"/api/authors/{author.wallet_address}/tokens?offset=4&limit=2").json()
    assert ([t["token_id"] for t in last["tokens"]], last["total"]) == ([1], 5)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=1e1", "limit"),
        ("offset=-1", "offset"),
        ("offset=1000000001", "offset"),
        ("offset=&limit=5", "offset"),
    ],
)
def test_paging_values_out_of_range_are_refused_with_their_name(client, db, token_pages, query, words):
    answer = client.get(f"/api/authors/0x{'ab' * 20}/tokens?{query}")
    assert answer.status_code == 400 and words in answer.json()["detail"]


def test_paging_values_the_serializer_accepts_still_page(client, db, token_pages):
    author = AuthorFactory.create()
    for token_id in range(1, 4):
        TokenFactory.create(token_id=token_id, author=author)
    for query in ("limit=002", "limit=2.0", "limit=%202", "offset=0&limit=2"):
        answer = client.get(f"/api/authors/{author.wallet_address}/tokens?{query}")
        assert answer.status_code == 200, query
        assert [t["token_id"] for t in answer.json()["tokens"]] == [3, 2], query


def test_a_wallet_is_matched_in_any_letter_case_and_a_malformed_one_refused_every_time(
    client, db, token_pages
):
    author = AuthorFactory.create(wallet_address="0x5FbDB2315678afecb367f032d93F642f64180aa3")
    TokenFactory.create(token_id=1, author=author)
    for wallet in (
        author.wallet_address,
        author.wallet_address.lower(),
        "0x5fbDB2315678AFECB367f032d93F642f64180aa3",
    ):
        assert client.get(f"/api/authors/{wallet}/tokens").json()["total"] == 1, wallet
    for _ in range(2):  # the second answer comes from the remembered check
        for malformed in ("0x5FbDB2315678afecb367f032d93F642f64180aa", "0x" + "g" * 40, "x" * 300):
            answer = client.get(f"/api/authors/{malformed}/tokens")
            assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_wallet"


def test_a_token_list_is_kept_for_the_configured_moment_per_page(client, db, settings, token_pages):
    settings.GLISK = dataclasses.replace(settings.GLISK, token_list_cache_seconds=0.6)
    author = AuthorFactory.create()
    TokenFactory.create(token_id=1, author=author)
    url = f"/api/authors/{author.wallet_address}/tokens"

    first = client.get(url).json()
    TokenFactory.create(token_id=2, author=author)
    Token.objects.filter(pk=1).update(status="generating")
    # Within the moment: the same page is the one already read; another page is read now.
    assert client.get(url).json() == first
    assert client.get(url.lower()).json() == first  # the same wallet in another case
    assert client.get(f"{url}?limit=5").json()["total"] == 2
    time.sleep(0.7)
    fresh = client.get(url).json()
    assert fresh["total"] == 2 and [t["status"] for t in fresh["tokens"]] == ["detected", "generating"]

    settings.GLISK = dataclasses.replace(settings.GLISK, token_list_cache_seconds=0)
    TokenFactory.create(token_id=3, author=author)
    assert client.get(url).json()["total"] == 3


def test_a_kept_page_serves_every_host_its_own_image_urls(client, db, settings, token_pages):
    """Found in review: the host was part of the key, so host names (or ports) multiplied the
    kept pages. The rows are kept now; each answer renders its own host into the URLs."""
    settings.GLISK = dataclasses.replace(settings.GLISK, token_list_cache_seconds=10, ipfs_provider="local")
    settings.ALLOWED_HOSTS = ["testserver", "example.org"]
    author = AuthorFactory.create()
    TokenFactory.create(token_id=1, author=author, image_cid="bafkimg")
    url = f"/api/authors/{author.wallet_address}/tokens"
    hosts = ["testserver", "testserver:1", "testserver:2", "example.org"]
    urls = [client.get(url, HTTP_HOST=host).json()["tokens"][0]["image_url"] for host in hosts]
    assert urls == [f"http://{host}/ipfs/bafkimg" for host in hosts]
    assert len(token_pages) == 1


def test_a_page_past_the_end_still_carries_the_total_from_one_statement(client, db, token_pages):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    author = AuthorFactory.create()
    TokenFactory.create(token_id=1, author=author)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/api/authors/{author.wallet_address.lower()}/tokens?offset=5").json()
    assert (page["tokens"], page["total"]) == ([], 1)
    (statement,) = [q["sql"] for q in queries.captured_queries if "lifecycle_token" in q["sql"]]
    assert "LOWER(" in statement.upper()  # the author through the unique lower(wallet) index


def test_a_poll_answered_directly_is_the_answer_drf_renders(client, db, token_pages):
    author = AuthorFactory.create()
    TokenFactory.create(
        token_id=1, author=author, status="failed", failed_stage="generating", last_error="é\u2028"
    )
    TokenFactory.create(
        token_id=2, author=author, image_cid="bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )
    url = f"/api/authors/{author.wallet_address}/tokens?limit=5"
    direct = client.get(url)
    token_pages._entries.clear()
    # A media range the direct answer does not read goes through DRF's negotiation.
    through_drf = client.get(url, HTTP_ACCEPT="application/*")
    assert direct.status_code == through_drf.status_code == 200
    assert direct.content == through_drf.content
    for header in ("Content-Type", "Vary", "Allow"):
        assert direct.headers[header] == through_drf.headers[header], header
    assert b"\\u2028" in direct.content and direct.json()["tokens"][1]["generation_error"] == "é\u2028"
    assert direct.json()["tokens"][0]["image_url"].startswith("http://testserver/")
    assert client.get(url, HTTP_ACCEPT="text/html").status_code == 406
    assert client.head(url).status_code == 200
    # Media types that merely contain "json", and ?format, are DRF's to refuse as it always did.
    for accept in ("application/jsonp", "application/json-patch+json"):
        assert client.get(url, HTTP_ACCEPT=accept).status_code == 406, accept
    assert client.get(f"{url}&format=xml").status_code == 404
    indented = client.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.status_code == 200 and indented.json() == direct.json()


def test_error_text_that_spells_out_the_site_mark_stays_text(client, db, token_pages):
    """The kept answer is cut where the site goes; text from a provider can hold anything."""
    author = AuthorFactory.create()
    error = 'replicate: invalid input {"prompt": "a\\u0000b \\"\\u0000 \\\\u0000"}'
    TokenFactory.create(
        token_id=1, author=author, status="failed", failed_stage="generating", last_error=error
    )
    TokenFactory.create(
        token_id=2, author=author, image_cid="bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )
    for accept in ("*/*", "application/*"):
        token_pages._entries.clear()
        tokens = client.get(f"/api/authors/{author.wallet_address}/tokens", HTTP_ACCEPT=accept).json()[
            "tokens"
        ]
        assert tokens[1]["generation_error"] == error
        assert tokens[0]["image_url"].startswith("http://testserver/ipfs/")


def test_the_token_list_has_no_drf_checks_that_its_direct_path_would_skip(db):
    """The direct path answers without DRF's `initial()` (authentication, permissions,
    throttles): if this view ever gets any, the direct path has to run them too."""
    from rest_framework.permissions import AllowAny

    from glisk.public_api.views import AuthorTokensApi

    view = AuthorTokensApi()
    assert view.get_authenticators() == []
    assert view.get_throttles() == []
    assert all(isinstance(permission, AllowAny) for permission in view.get_permissions())
