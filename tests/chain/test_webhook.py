from __future__ import annotations

import copy
import json
import random

import pytest

from authors.models import Author
from chain.models import MintEvent, WebhookDelivery
from glisk.devtools import devnet
from lifecycle.models import Token
from tests.chain.helpers import SECRET, payload_for_receipt, post_delivery
from tests.factories import AuthorFactory

pytestmark = pytest.mark.django_db


def test_reference_signature_vector():
    from chain.services.webhooks import webhook_signature_valid

    body = (
        b'{"webhookId":"wh_test","id":"whevt_test","createdAt":"2024-01-01T00:00:00.000Z","type":"GRAPHQL",'
        b'"event":{"data":{"block":{"logs":[]}},"sequenceNumber":"1"}}'
    )
    expected = "eb51cb24e7341e5f65b71882eea72310f766fd9531cfdf9792146a87074361d9"
    assert webhook_signature_valid(body=body, signature=expected, secret="whsec_test")
    assert not webhook_signature_valid(body=body + b" ", signature=expected, secret="whsec_test")


def test_mint_on_anvil_then_signed_delivery_creates_the_right_rows(client, chain, accounts):
    minter, author_wallet = accounts[2], accounts[3]
    receipt = devnet.mint(chain, minter=minter, prompt_author=author_wallet, quantity=3)
    payload = payload_for_receipt(chain, receipt)

    response = post_delivery(client, payload)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mint_events_new"] == 1 and body["tokens_new"] == 3 and body["authors_new"] == 1
    assert body["new_token_range"] == [1, 3]
    event = MintEvent.objects.get()
    assert (event.minter, event.prompt_author) == (minter, author_wallet)
    assert (event.start_token_id, event.quantity) == (1, 3)
    assert int(event.total_paid_wei) == 3 * devnet.MINT_PRICE_WEI
    assert event.tx_hash == receipt["transactionHash"] and event.block_number == int(
        receipt["blockNumber"], 16
    )
    assert event.block_hash == receipt["blockHash"] and event.source == "webhook"
    assert event.block_timestamp.timestamp() == int(chain.get_block(event.block_number)["timestamp"], 16)
    tokens = list(Token.objects.order_by("token_id"))
    assert [t.token_id for t in tokens] == [1, 2, 3]
    assert {t.status for t in tokens} == {"detected"}
    author = Author.objects.get()
    assert author.wallet_address == author_wallet and author.prompt_text is None
    assert all(t.author_id == author.pk and t.mint_event_id == event.pk for t in tokens)
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "processed" and delivery.signature_valid is True
    assert bytes(delivery.body) == json.dumps(payload).encode()


def test_new_tokens_nudge_the_image_stage_in_the_same_transaction(client, chain, accounts):
    from django_q.models import OrmQ

    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    post_delivery(client, payload_for_receipt(chain, receipt))
    assert OrmQ.objects.count() == 1
    assert "image_stage" in str(OrmQ.objects.get().task["func"])
    # A duplicate makes nothing due, so it queues nothing.
    post_delivery(client, payload_for_receipt(chain, receipt))
    assert OrmQ.objects.count() == 1


def test_known_author_is_reused_case_insensitively(client, chain, accounts):
    known = AuthorFactory.create(wallet_address=accounts[3].lower(), prompt_text="my prompt")
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    assert post_delivery(client, payload_for_receipt(chain, receipt)).json()["authors_new"] == 0
    assert Author.objects.count() == 1
    assert set(Token.objects.values_list("author_id", flat=True)) == {known.pk}


def test_same_delivery_three_times_and_shuffled_orders_give_the_same_rows(client, chain, accounts):
    payloads = []
    for quantity in (1, 5, 2, 7):
        receipt = devnet.mint(
            chain, minter=accounts[4], prompt_author=accounts[5 + quantity % 3], quantity=quantity
        )
        payloads.append(payload_for_receipt(chain, receipt))
    deliveries = payloads * 3
    random.Random(7).shuffle(deliveries)
    results = [post_delivery(client, p) for p in deliveries]
    assert all(r.status_code == 200 for r in results)
    assert sum(r.json()["tokens_new"] for r in results) == 15
    assert sum(r.json()["mint_events_new"] for r in results) == 4
    assert MintEvent.objects.count() == 4
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, 16))
    assert WebhookDelivery.objects.filter(outcome="processed").count() == 12


def test_duplicate_middle_log_does_not_stop_the_later_logs(client, chain, accounts):
    # Three mints in one block (mining paused), then a delivery whose middle log was seen before.
    chain.rpc("evm_setAutomine", [False])
    hashes = []
    for quantity in (2, 3, 4):
        from eth_abi import encode

        from chain.abi import selector

        data = selector({"name": "mint", "inputs": [{"type": "address"}, {"type": "uint256"}]})
        data += encode(["address", "uint256"], [accounts[3], quantity]).hex()
        hashes.append(
            chain.rpc(
                "eth_sendTransaction",
                [
                    {
                        "from": accounts[2],
                        "to": chain.contract_address,
                        "data": data,
                        "value": hex(devnet.MINT_PRICE_WEI * quantity),
                        "gas": hex(1_500_000),
                    }
                ],
            )
        )
    chain.rpc("evm_mine")
    chain.rpc("evm_setAutomine", [True])
    receipt = devnet.wait_for_receipt(chain, hashes[1])
    full = payload_for_receipt(chain, receipt)
    assert len(full["event"]["data"]["block"]["logs"]) == 3
    middle_only = copy.deepcopy(full)
    middle_only["event"]["data"]["block"]["logs"] = [full["event"]["data"]["block"]["logs"][1]]
    assert post_delivery(client, middle_only).json()["tokens_new"] == 3

    body = post_delivery(client, full).json()

    assert (body["mint_events_new"], body["mint_events_duplicate"]) == (2, 1)
    assert body["tokens_new"] == 6 and body["tokens_existing"] == 3
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, 10))


@pytest.mark.parametrize("signature", [None, "0" * 64, "not-hex", ""])
def test_bad_or_missing_signature_is_401_and_writes_no_mint_rows(client, chain, accounts, signature):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    payload = payload_for_receipt(chain, receipt)
    if signature is None:
        response = post_delivery(client, payload, signature=False)
    else:
        response = post_delivery(client, payload, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"] == "X-Alchemy-Signature"
    assert not MintEvent.objects.exists() and not Token.objects.exists() and not Author.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "rejected_signature" and delivery.signature_valid is False


def test_signature_with_another_secret_is_401(client, chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    assert post_delivery(client, payload_for_receipt(chain, receipt), secret="whsec_other").status_code == 401


def test_capacity_error_is_recorded_and_answered_200(client, chain):
    payload = {
        "webhookId": "wh_x",
        "id": "whevt_cap",
        "type": "GRAPHQL",
        "event": {"error": "Webhook capacity exceeded"},
    }
    response = post_delivery(client, payload)
    assert response.status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "capacity_error" and "capacity" in delivery.error


def test_other_contracts_and_other_events_are_ignored(client, chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    payload = payload_for_receipt(chain, receipt)
    log = payload["event"]["data"]["block"]["logs"][0]
    other_contract = copy.deepcopy(log)
    other_contract["account"]["address"] = "0x" + "12" * 20
    other_event = copy.deepcopy(log)
    other_event["topics"][0] = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    payload["event"]["data"]["block"]["logs"] = [other_contract, other_event]
    body = post_delivery(client, payload).json()
    assert body["ignored_logs"] == 2 and body["tokens_new"] == 0
    assert not MintEvent.objects.exists()


def test_reverted_transaction_is_ignored(client, chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    payload = payload_for_receipt(chain, receipt)
    payload["event"]["data"]["block"]["logs"][0]["transaction"]["status"] = 0
    body = post_delivery(client, payload).json()
    assert body["ignored_logs"] == 1 and not Token.objects.exists()


def test_delivery_for_another_network_is_refused(client, chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    payload = payload_for_receipt(chain, receipt)
    payload["event"]["network"] = "BASE_MAINNET"
    response = post_delivery(client, payload)
    assert response.status_code == 400 and "network" in response.json()["error"]["message"]
    assert not Token.objects.exists()


def test_webhook_secret_never_appears_in_responses(client, chain):
    response = post_delivery(client, {"x": 1}, signature="00")
    assert SECRET not in response.content.decode()


def test_a_delivery_from_a_query_without_block_hash_and_time_is_accepted_and_completed_later(
    client, chain, accounts, settings
):
    """The earlier backend's query selected only `number` and the logs' essentials."""
    from chain.services.watcher import watcher_step

    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    full = payload_for_receipt(chain, receipt)
    block = full["event"]["data"]["block"]
    block_number = block["number"]
    slim_logs = [
        {
            "account": {"address": log["account"]["address"]},
            "topics": log["topics"],
            "data": log["data"],
            "index": log["index"],
            "transaction": {"hash": log["transaction"]["hash"], "status": log["transaction"]["status"]},
        }
        for log in block["logs"]
    ]
    full["event"]["data"]["block"] = {"number": block_number, "logs": slim_logs}
    full["event"]["somethingNew"] = {"added": "by Alchemy later"}  # unknown fields are ignored

    response = post_delivery(client, full)

    assert response.status_code == 200, response.content
    assert response.json()["tokens_new"] == 2
    event = MintEvent.objects.get()
    assert event.block_number == block_number and event.block_hash == "" and event.block_timestamp is None
    # The log watcher reads the same log from the chain and fills in what the delivery lacked.
    chain.rpc("anvil_mine", [hex(settings.GLISK.watcher_confirmations)])
    while (step := watcher_step(chain=chain)) is not None and not step.caught_up:
        pass
    event.refresh_from_db()
    assert event.block_hash == receipt["blockHash"] and event.block_timestamp is not None
    assert event.block_timestamp.timestamp() == int(chain.get_block(block_number)["timestamp"], 16)
    assert MintEvent.objects.count() == 1 and Token.objects.count() == 2
