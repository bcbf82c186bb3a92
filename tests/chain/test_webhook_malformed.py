"""Malformed deliveries: 400 (or ignored), never 500, never a partial write."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.models import MintEvent, WebhookDelivery
from glisk.devtools import devnet
from lifecycle.models import Token
from tests.chain.helpers import payload_for_receipt, post_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def good_payload(chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    return payload_for_receipt(chain, receipt)


def block(payload):
    return payload["event"]["data"]["block"]


def mutate(payload, fn):
    clone = copy.deepcopy(payload)
    fn(clone)
    return clone


MUTATIONS = {
    "no event": lambda p: p.pop("event"),
    "event not object": lambda p: p.__setitem__("event", []),
    "no block": lambda p: p["event"]["data"].pop("block"),
    "no data": lambda p: p["event"].pop("data"),
    "block number string": lambda p: block(p).__setitem__("number", "12"),
    "block number negative": lambda p: block(p).__setitem__("number", -1),
    "block number bool": lambda p: block(p).__setitem__("number", True),
    "block hash short": lambda p: block(p).__setitem__("hash", "0x1234"),
    "timestamp float": lambda p: block(p).__setitem__("timestamp", 1.5),
    "logs not list": lambda p: block(p).__setitem__("logs", {"a": 1}),
    "log not object": lambda p: block(p)["logs"].append(7),
    "topics not list": lambda p: block(p)["logs"][0].__setitem__("topics", "0x"),
    "data too short": lambda p: block(p)["logs"][0].__setitem__("data", "0x1234"),
    "data not hex": lambda p: block(p)["logs"][0].__setitem__("data", "0x" + "zz" * 64),
    "absurd quantity": lambda p: block(p)["logs"][0].__setitem__("data", "0x" + f"{10**6:064x}" + "0" * 64),
    "zero quantity": lambda p: block(p)["logs"][0].__setitem__("data", "0x" + "0" * 128),
    "start id zero": lambda p: block(p)["logs"][0]["topics"].__setitem__(3, "0x" + "0" * 64),
    "author topic dirty": lambda p: block(p)["logs"][0]["topics"].__setitem__(2, "0x" + "f" * 64),
    "missing topic": lambda p: block(p)["logs"][0]["topics"].pop(),
    "tx hash missing": lambda p: block(p)["logs"][0]["transaction"].pop("hash"),
    "transaction not object": lambda p: block(p)["logs"][0].__setitem__("transaction", "0x"),
    "index huge": lambda p: block(p)["logs"][0].__setitem__("index", 2**40),
    "account missing": lambda p: block(p)["logs"][0].pop("account"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_payload_is_400_and_writes_nothing_but_the_delivery(client, good_payload, name):
    payload = mutate(good_payload, MUTATIONS[name])
    # A second, valid log in the same delivery must not be half-written either.
    response = post_delivery(client, payload)
    assert response.status_code == 400, (name, response.content)
    assert set(response.json()["error"]) == {"type", "message"}
    assert not MintEvent.objects.exists() and not Token.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "malformed"
    # Its page and the search show the event the body names, when it names one.
    if isinstance(payload.get("id"), str):
        assert delivery.event_id == payload["id"] and delivery.webhook_id == str(payload.get("webhookId", ""))


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[1,2]", b"null", b'{"event": 5}', b"\xff\xfe", b"{" * 10]
)
def test_non_json_or_wrong_shape_bodies_are_400(client, chain, body):
    response = post_delivery(client, None, body=body)
    assert response.status_code == 400
    assert WebhookDelivery.objects.get().outcome == "malformed"


def test_a_malformed_second_log_rejects_the_whole_delivery(client, good_payload):
    bad = copy.deepcopy(block(good_payload)["logs"][0])
    bad["data"] = "0x00"
    block(good_payload)["logs"].append(bad)
    assert post_delivery(client, good_payload).status_code == 400
    assert not Token.objects.exists()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
paths = st.sampled_from(
    [
        ("event",),
        ("event", "data"),
        ("event", "data", "block"),
        ("event", "data", "block", "number"),
        ("event", "data", "block", "hash"),
        ("event", "data", "block", "timestamp"),
        ("event", "data", "block", "logs"),
        ("event", "data", "block", "logs", 0),
        ("event", "data", "block", "logs", 0, "topics"),
        ("event", "data", "block", "logs", 0, "topics", 1),
        ("event", "data", "block", "logs", 0, "data"),
        ("event", "data", "block", "logs", 0, "index"),
        ("event", "data", "block", "logs", 0, "transaction"),
        ("event", "data", "block", "logs", 0, "transaction", "status"),
        ("event", "data", "block", "logs", 0, "account", "address"),
        ("event", "network"),
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, value=json_values)
def test_fuzzed_payloads_never_500_and_never_write_partially(client, good_payload, path, value):
    payload = copy.deepcopy(good_payload)
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    tokens_before = Token.objects.count()
    response = post_delivery(client, payload)
    assert response.status_code in (200, 400), response.content
    created = Token.objects.count() - tokens_before
    if response.status_code == 400:
        assert created == 0
    else:
        assert created in (0, 2)  # all of a mint or none of it
    json.loads(response.content)


@pytest.mark.parametrize("event_id", ["whevt_\x00nul", "\x00"])
def test_an_id_with_a_nul_byte_is_stored_without_it(client, chain, event_id):
    """Found by the fuzz suite: PostgreSQL text cannot hold NUL, and a malformed delivery's id
    with one was a 500."""
    import json

    body = json.dumps({"id": event_id, "webhookId": "wh_\x00x", "event": 5}).encode()
    response = post_delivery(client, None, body=body)
    assert response.status_code == 400
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_id == event_id.replace("\x00", "") and delivery.webhook_id == "wh_x"
