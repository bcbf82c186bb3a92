"""Schemathesis against a live gunicorn: every operation of the published OpenAPI schema (the
webhook included, with and without a valid signature) gets generated requests; none may answer
5xx or anything its schema does not describe, and every refusal says why in `detail`."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance

from glisk.devtools.stack import Stack
from tests.e2e.conftest import test_database_url

pytestmark = pytest.mark.slow

SECRET = "whsec_schema_fuzz"
SIGNED = {
    "POST /api/authors/prompt",
    "POST /api/authors/x/auth/start",
    "POST /api/authors/farcaster/link",
    "POST /webhooks/alchemy",
}
EXAMPLES = 100  # per operation: 11 operations, about 1,100 requests in well under two minutes


@pytest.fixture
def live_api(tmp_path, transactional_db):
    extra = {"ALCHEMY_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    with Stack(var_dir=tmp_path / "var", database_url=test_database_url(), extra_env=extra) as stack:
        stack.start_chain()
        stack.start_social_standins()  # X and the name registry; the chain holds a Farcaster registry
        stack.start_web()
        yield stack.web_url


def test_every_public_operation_against_a_live_server(live_api):
    schema = schemathesis.openapi.from_url(f"{live_api}/api/schema")
    seen: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case):
            key = f"{case.method} {case.path}"
            seen[key] = seen.get(key, 0) + 1
            call(case, live_api)

        check()
    print(f"schemathesis: {sum(seen.values())} requests to {len(seen)} operations: {sorted(seen)}")
    # Every public operation the schema publishes (the X callback is a browser redirect, not in it).
    assert set(seen) == {
        "GET /api/authors/leaderboard",
        "GET /api/authors/{wallet}",
        "GET /api/authors/{wallet}/nonce",
        "GET /api/authors/{wallet}/tokens",
        "GET /api/stats/authors",
        "GET /api/tokens/by-author/{wallet}",
        "GET /api/tokens/{token_id}",
        "POST /api/authors/farcaster/link",
        "POST /api/authors/prompt",
        "POST /api/authors/x/auth/start",
        "POST /webhooks/alchemy",
    }


def call(case, live_api):
    key = f"{case.method} {case.path}"
    if case.path == "/webhooks/alchemy":
        raw = json.dumps(case.body).encode() if isinstance(case.body, (dict, list)) else b"{}"
        headers = {"Content-Type": "application/json"}
        if hashlib.sha256(raw).digest()[0] % 2:  # half of them signed with the right key
            headers["X-Alchemy-Signature"] = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        response = requests.post(f"{live_api}/webhooks/alchemy", data=raw, headers=headers, timeout=30)
    else:
        response = case.call(base_url=live_api)
    assert response.status_code < 500, f"{key}: {response.status_code} {response.text[:500]}"
    # A signed write refuses a schema-valid body whose signature no generator can forge.
    excluded = [positive_data_acceptance] if key in SIGNED else []
    case.validate_response(response, excluded_checks=excluded)
    if 400 <= response.status_code < 500 and "json" in response.headers.get("Content-Type", ""):
        assert "detail" in response.json(), f"{key}: {response.text[:300]}"
