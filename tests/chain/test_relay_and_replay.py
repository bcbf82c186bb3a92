from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command

from chain.models import MintEvent, WebhookDelivery
from glisk.devtools import devnet
from glisk.devtools.relay import WebhookRelay
from lifecycle.models import Token
from tests.chain.helpers import SECRET, payload_for_receipt, post_delivery


@pytest.mark.django_db(transaction=True)
def test_relay_delivers_signed_alchemy_payloads_to_the_running_app(live_server, chain, accounts):
    """anvil → relay → real HTTP → the webhook view → tokens, with no test code in between."""
    relay = WebhookRelay(
        chain=chain,
        url=f"{live_server.url}/webhooks/alchemy",
        secret=SECRET,
        start_block=chain.block_number() + 1,
        poll_seconds=0.05,
    )
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
        devnet.mint(chain, minter=accounts[4], prompt_author=accounts[5], quantity=3)
        chain.rpc("anvil_mine", ["0x3"])  # empty blocks: no delivery for them
        deadline = time.monotonic() + 15
        while Token.objects.count() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        relay.stop()
        thread.join(timeout=5)
    assert sorted(Token.objects.values_list("token_id", flat=True)) == [1, 2, 3, 4, 5]
    assert relay.delivered == 2 and relay.failed == 0
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {"processed"}
    assert set(MintEvent.objects.values_list("source", flat=True)) == {"webhook"}


@pytest.mark.django_db(transaction=True)
def test_relay_retries_non_200_like_alchemy(live_server, chain, accounts, settings):
    import dataclasses

    settings.GLISK = dataclasses.replace(settings.GLISK, alchemy_webhook_secret="rotated-secret")
    relay = WebhookRelay(
        chain=chain,
        url=f"{live_server.url}/webhooks/alchemy",
        secret=SECRET,
        start_block=chain.block_number() + 1,
        retry_seconds=(0.2, 0.2),
    )
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    relay.step()  # 401: the app's secret was rotated
    assert relay.delivered == 0 and len(relay.pending) == 1
    settings.GLISK = dataclasses.replace(settings.GLISK, alchemy_webhook_secret=SECRET)
    time.sleep(0.25)
    relay.step()
    assert relay.delivered == 1 and not relay.pending
    assert Token.objects.count() == 1
    assert list(WebhookDelivery.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "rejected_signature",
        "processed",
    ]


def replay(*args):
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("replay_webhooks", *args, stdout=out, stderr=err)
    return exit_info.value.code, out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_replay_reruns_a_malformed_delivery_after_the_fix(client, chain, accounts, settings):
    import dataclasses

    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    payload = payload_for_receipt(chain, receipt)
    # The service was configured for the wrong contract when the delivery came in.
    right = settings.GLISK.contract_address
    settings.GLISK = dataclasses.replace(settings.GLISK, network="BASE_SEPOLIA")
    assert post_delivery(client, payload).status_code == 400
    settings.GLISK = dataclasses.replace(settings.GLISK, network="DEVNET", contract_address=right)
    code, out, _ = replay("--failed")
    assert code == 0 and "replayed: 1" in out and "new tokens: 2" in out
    assert Token.objects.count() == 2
    assert WebhookDelivery.objects.get().outcome == "processed"
    assert WebhookDelivery.objects.get().replay_count == 1
    # Replaying a processed delivery again is harmless.
    code, out, _ = replay("--ids", str(WebhookDelivery.objects.get().pk))
    assert code == 0 and "new tokens: 0" in out and Token.objects.count() == 2


@pytest.mark.django_db
def test_replay_refuses_deliveries_whose_signature_does_not_verify(client, chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    post_delivery(client, payload_for_receipt(chain, receipt), signature="ab" * 32)
    code, _, err = replay("--ids", str(WebhookDelivery.objects.get().pk))
    assert code == 2 and "does not verify" in err
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_replay_names_unknown_ids():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no such deliveries"):
        call_command("replay_webhooks", "--ids", "999999")
