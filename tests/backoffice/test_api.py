"""The read API: its responses, and a property test of every operation against its own schema."""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from chain.models import RevealTransaction
from tests.factories import AuthorFactory, MintEventFactory, RevealTransactionFactory, TokenFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def collection():
    alice = AuthorFactory.create(twitter_handle="@alice")
    bob = AuthorFactory.create()
    event = MintEventFactory.create(author=alice, start_token_id=1, quantity=3)
    tx = RevealTransactionFactory.create(
        token_ids=[1], status=RevealTransaction.Status.CONFIRMED, gas_used=100_000
    )
    TokenFactory.create(
        token_id=1,
        author=alice,
        mint_event=event,
        status="revealed",
        image_cid="bafkimg",
        metadata_cid="bafkmeta",
        reveal_transaction=tx,
    )
    TokenFactory.create(token_id=2, author=alice, mint_event=event, status="ready")
    TokenFactory.create(token_id=3, author=alice, mint_event=event, status="failed", last_error="boom")
    TokenFactory.create(token_id=4, author=bob, status="detected")
    return alice, bob, tx, event


def test_token_by_id(client, collection):
    alice, _, tx, event = collection
    body = client.get("/api/tokens/1").json()
    assert body["token_id"] == 1 and body["status"] == "revealed" and body["author"] == alice.wallet_address
    assert body["image_cid"] == "bafkimg" and body["metadata_url"] == "/ipfs/bafkmeta"
    assert body["token_uri"] == "ipfs://bafkmeta" and body["reveal_tx"] == tx.tx_hash
    assert body["mint_tx"] == event.tx_hash
    pending = client.get("/api/tokens/2").json()
    assert pending["reveal_tx"] is None and pending["token_uri"] is None


def test_unknown_token_is_a_json_404(client):
    response = client.get("/api/tokens/999")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "token #999 is not known",
        "error": {"type": "not_found", "message": "token #999 is not known"},
    }


def test_tokens_of_an_author_paginated_case_insensitively(client, collection):
    alice, *_ = collection
    body = client.get(f"/api/tokens/by-author/{alice.wallet_address.lower()}", {"limit": 2}).json()
    assert body["count"] == 3 and [t["token_id"] for t in body["results"]] == [3, 2]
    assert body["next"] is not None
    assert client.get("/api/tokens/by-author/0x123").status_code == 400
    assert client.get(f"/api/tokens/by-author/0x{'ab' * 20}").status_code == 404


def test_leaderboard(client, collection):
    alice, bob, *_ = collection
    body = client.get("/api/stats/authors").json()
    assert [(r["wallet_address"], r["tokens"], r["revealed"]) for r in body["results"]] == [
        (alice.wallet_address, 3, 1),
        (bob.wallet_address, 1, 0),
    ]


def test_docs_are_served_from_the_project(client):
    schema = client.get("/api/schema")
    assert schema.status_code == 200 and b"/api/tokens/{token_id}" in schema.content
    for page in ("/docs", "/redoc"):
        html = client.get(page).content.decode()
        # Every script, style and icon comes from our static files, none from another host (a CDN).
        # Not a search for "cdn" in the page: its random CSRF token spelled it once in a while.
        loaded = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'> ]+)""", html)
        assert loaded and all(url.startswith("/static/") for url in loaded), loaded
        assert not re.search(r"(?:https?:)?//[\w.-]+(?::\d+)?/", html, re.IGNORECASE), page
        assert "/static/drf_spectacular_sidecar/" in html
    assert (
        client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    )


def test_unknown_paths_are_json_404s(client):
    response = client.get("/api/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"


# The prompt update and the account links are left out: a request they accept needs a wallet's
# signature, which no generated body has, and their refusals (and their documented 503s: an
# unreachable chain, linking not configured) are tested one by one in tests/public_api.
schema = (
    schemathesis.openapi.from_wsgi("/api/schema", get_wsgi_application())
    .include(path_regex="^/api/")
    .exclude(method="POST", path="/api/authors/prompt")
    .exclude(method="POST", path="/api/authors/x/auth/start")
    .exclude(method="POST", path="/api/authors/farcaster/link")
)


@pytest.fixture
def seeded(collection):
    """As Django's test client does: keep the test's transaction open across WSGI calls."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield collection
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema_and_never_500s(case, seeded):
    response = case.call()
    assert response.status_code < 500, response.text
    case.validate_response(response)


def test_docs_pages_forbid_third_party_requests(client):
    for page in ("/docs", "/redoc"):
        csp = client.get(page)["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "font-src 'self'" in csp and "img-src 'self'" in csp


def test_docs_pages_ask_nothing_of_the_internet_and_the_schema_names_are_meaningful(client):
    """Their CSP would block it with a console error (seen in headless Chromium before): ReDoc's
    page linked Google Fonts, and its sidebar credit a logo on cdn.redoc.ly."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).content.decode()
        assert re.findall(r"(?:href|src)=\"(https?://[^\"]+)\"", html) == []
    redoc = client.get("/redoc").content.decode()
    assert "glisk/redoc-offline.js" in redoc
    from django.contrib.staticfiles import finders

    found = finders.find("glisk/redoc-offline.js")
    assert isinstance(found, str)
    with open(found) as handle:
        script = handle.read()
    assert "https://cdn.redoc.ly/redoc/logo-mini.svg" in script  # the one request it rewrites
    components = client.get("/api/schema", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    assert "Inner" not in components and "ErrorDetail" in components
