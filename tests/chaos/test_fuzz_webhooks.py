"""Scenario 7: fuzzed webhook bodies and signatures: never a 500, nothing written for invalid input."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.models import MintEvent, WebhookDelivery
from chain.services import webhooks
from chain.services.webhooks import UNSTORED_KEY
from glisk.core.state import state_get
from glisk.devtools.relay import sign
from lifecycle.models import Token
from tests.chaos.conftest import scale

pytestmark = pytest.mark.django_db

SECRET = "whsec_test"
hexes = st.text(alphabet="0123456789abcdef", min_size=0, max_size=70).map(lambda s: "0x" + s)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.text(max_size=12)
    | hexes
)
logs = st.fixed_dictionaries(
    {
        "index": json_scalars,
        "account": st.fixed_dictionaries({"address": json_scalars}),
        "topics": st.lists(hexes | json_scalars, max_size=5),
        "data": hexes | json_scalars,
        "transaction": st.fixed_dictionaries({"hash": hexes, "status": json_scalars}),
    }
)
bodies = st.fixed_dictionaries(
    {
        "id": json_scalars,
        "event": st.fixed_dictionaries(
            {
                "data": st.fixed_dictionaries(
                    {
                        "block": st.fixed_dictionaries(
                            {
                                "hash": hexes | json_scalars,
                                "number": json_scalars,
                                "timestamp": json_scalars,
                                "logs": st.lists(logs, max_size=3) | json_scalars,
                            }
                        )
                    }
                )
                | json_scalars,
                "network": st.sampled_from(["DEVNET", "BASE_MAINNET"]) | json_scalars,
            }
        )
        | json_scalars,
    }
).map(lambda b: json.dumps(b).encode()) | st.binary(max_size=300)
signatures = st.sampled_from(["valid", "missing", "wrong", "garbage"])


@settings(max_examples=scale(300, 10_000), deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, how=signatures)
def test_fuzzed_bodies_and_signatures(client, chain, body, how, monkeypatch):
    headers = {}
    if how == "valid":
        headers["HTTP_X_ALCHEMY_SIGNATURE"] = sign(body, SECRET)
    elif how == "wrong":
        headers["HTTP_X_ALCHEMY_SIGNATURE"] = sign(body, "whsec_other")
    elif how == "garbage":
        headers["HTTP_X_ALCHEMY_SIGNATURE"] = "zz" * 40
    cache.clear()  # a client's rate of refused deliveries is not what this fuzzes
    monkeypatch.setattr(webhooks, "UNSTORED_FLUSH_SECONDS", 0.0)  # every count written at once
    before = (MintEvent.objects.count(), Token.objects.count())
    unstored = _unstored()
    response = client.post("/webhooks/alchemy", data=body, content_type="application/json", **headers)
    assert response.status_code in (200, 400, 401), response.content
    assert "Traceback" not in response.content.decode(errors="replace")
    if response.status_code != 200:
        assert (MintEvent.objects.count(), Token.objects.count()) == before
    if how != "valid":
        assert response.status_code == 401
    if how == "valid":
        assert WebhookDelivery.objects.filter(body=body).exists()  # a signed delivery: always kept
    else:  # kept as a trace within the hour's sample, else counted
        assert WebhookDelivery.objects.filter(body=body[:4096]).exists() or _unstored() == unstored + 1


def _unstored() -> int:
    return int((state_get(key=UNSTORED_KEY, default={}) or {}).get("rejected_signature", 0))
