"""Nothing is lost or duplicated when things break. Each scenario ends with the full audit."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
import requests

from chain import devnet
from chain.models import MintEvent, WebhookDelivery
from chain.relay import build_alchemy_payload, sign
from glisk.stack import mint_many, mint_plan, wait_until
from lifecycle.models import Token
from lifecycle.services.audit import pipeline_audit
from tests.chaos.conftest import scale
from tests.standins.pinata import PinataStandIn
from tests.standins.replicate import ReplicateStandIn
from tests.standins.rpc_proxy import RpcProxy

pytestmark = pytest.mark.slow


def all_done(total: int) -> bool:
    return Token.objects.filter(status__in=["revealed", "failed"]).count() >= total


def mint(stack, total, seed=7):
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    mint_many(chain, mint_plan(total, seed=seed), authors=accounts[10:16], collectors=accounts[2:10])
    return chain


def assert_invariants(stack, chain, total, *, allow_failed=False, local_ipfs=True):
    gateway = stack.web_url if local_ipfs and stack.procs else None
    result = pipeline_audit(chain=chain, gateway_url=gateway)
    assert result.problems == []
    assert result.on_chain == total and result.unfinished == 0
    if not allow_failed:
        assert result.failed == 0
    return result


def test_sigkill_a_random_cluster_every_few_seconds(chaos_stack):
    """Scenario 1: clusters killed with SIGKILL (and restarted) while tokens flow."""
    total = scale(80, 1000)
    stack = chaos_stack()
    stack.start_web()
    clusters = [stack.start_cluster("c1"), stack.start_cluster("c2")]
    chain = mint(stack, total)
    kills = 0
    rng = random.Random(3)
    while not all_done(total) and kills < scale(3, 30):
        time.sleep(rng.uniform(2, 5))
        victim = clusters.pop(rng.randrange(len(clusters)))
        stack.kill(victim)
        kills += 1
        clusters.append(stack.start_cluster(f"c-restart-{kills}"))
    assert wait_until(lambda: all_done(total), timeout=300)
    assert kills >= 1
    assert_invariants(stack, chain, total)


def test_same_deliveries_three_times_out_of_order_from_several_senders(chaos_stack):
    """Scenario 3: Alchemy retries and overlaps, against the app under gunicorn."""
    total = scale(80, 600)
    stack = chaos_stack()
    stack.start_web()
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    receipts = []
    for n, size in enumerate(mint_plan(total, seed=11)):
        receipts.append(
            devnet.mint(chain, minter=accounts[2 + n % 8], prompt_author=accounts[10 + n % 6], quantity=size)
        )
    blocks = sorted({int(r["blockNumber"], 16) for r in receipts})
    bodies = [json.dumps(build_alchemy_payload(chain, b)).encode() for b in blocks]
    deliveries = bodies * 3
    random.Random(5).shuffle(deliveries)
    secret = stack.info.webhook_secret
    answered: list[int] = []
    lock = threading.Lock()

    def sender(chunk):
        session = requests.Session()
        for body in chunk:
            response = session.post(
                f"{stack.web_url}/webhooks/alchemy",
                data=body,
                timeout=30,
                headers={"X-Alchemy-Signature": sign(body, secret), "Content-Type": "application/json"},
            )
            with lock:
                answered.append(response.status_code)

    threads = [threading.Thread(target=sender, args=(deliveries[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answered.count(200) == len(deliveries)
    assert MintEvent.objects.count() == len(receipts)
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, total + 1))
    assert WebhookDelivery.objects.filter(outcome="processed").count() == len(deliveries)
    stack.start_cluster("c1")
    assert wait_until(lambda: all_done(total), timeout=300)
    assert_invariants(stack, chain, total)


def test_restarting_the_web_app_during_ingestion_loses_no_answered_delivery(chaos_stack):
    """Scenario 2 (web half): every delivery answered 200 is in the database."""
    total = scale(60, 500)
    stack = chaos_stack()
    web = stack.start_web()
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    bodies = []
    for n, size in enumerate(mint_plan(total, seed=13)):
        receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[10 + n % 3], quantity=size)
        bodies.append(json.dumps(build_alchemy_payload(chain, int(receipt["blockNumber"], 16))).encode())
    secret = stack.info.webhook_secret
    ok_event_ids: list[str] = []
    pending = list(bodies)
    restarts = 0
    while pending:
        body = pending[0]
        try:
            response = requests.post(
                f"{stack.web_url}/webhooks/alchemy",
                data=body,
                timeout=10,
                headers={"X-Alchemy-Signature": sign(body, secret)},
            )
        except requests.RequestException:
            time.sleep(0.2)  # the app is restarting: Alchemy would retry
            continue
        if response.status_code == 200:
            ok_event_ids.append(json.loads(body)["id"])
            pending.pop(0)
        if len(ok_event_ids) % 4 == 2 and restarts < scale(3, 10):
            stack.kill(web)  # SIGKILL mid-stream
            restarts += 1
            web = stack.start_web()
    stored = set(WebhookDelivery.objects.filter(outcome="processed").values_list("event_id", flat=True))
    assert set(ok_event_ids) <= stored
    assert Token.objects.count() == total
    assert restarts >= 1


def test_provider_faults_nsfw_and_an_rpc_outage(chaos_stack):
    """Scenario 4: 30 % of Replicate and Pinata calls fail, 5 % of prompts are NSFW, the RPC
    refuses every request for a while mid-run."""
    total = scale(30, 500)
    replicate, pinata = ReplicateStandIn().start(), PinataStandIn().start()
    replicate.random_faults = ("429", "429_retry_after", "500", "503", "slow", "model_error", "nsfw")
    replicate.fault_rate = 0.35  # 6/7 of it transient errors (30 %), 1/7 NSFW (5 %)
    replicate.slow_seconds = 2.5
    pinata.random_faults = ("429", "500", "503", "slow")
    pinata.fault_rate = 0.3
    pinata.slow_seconds = 2.5
    try:
        stack = chaos_stack()
        proxy = RpcProxy(stack.info.rpc_url).start()
        stack.extra_env.update(
            {
                "RPC_URL": proxy.url,
                "IMAGE_PROVIDER": "replicate",
                "REPLICATE_API_TOKEN": replicate.token,
                "REPLICATE_BASE_URL": replicate.url,
                "REPLICATE_TIMEOUT_SECONDS": "2",
                "IPFS_PROVIDER": "pinata",
                "PINATA_JWT": pinata.jwt,
                "PINATA_API_URL": pinata.url,
                "PINATA_TIMEOUT_SECONDS": "2",
                "IMAGE_MAX_ATTEMPTS": "8",
                "IPFS_MAX_ATTEMPTS": "8",
                "RPC_TIMEOUT_SECONDS": "2",
            }
        )
        stack.start_web()
        stack.start_relay()
        stack.start_cluster("c1")
        stack.start_cluster("c2")
        chain = mint(stack, total)
        assert wait_until(lambda: Token.objects.filter(status="revealed").count() >= total // 3, timeout=300)
        proxy.outage(scale(5, 20))
        assert wait_until(lambda: all_done(total), timeout=600), list(
            Token.objects.exclude(status__in=["revealed", "failed"]).values_list(
                "token_id", "status", "last_error"
            )[:5]
        )
        assert proxy.refused > 0
        result = assert_invariants(stack, chain, total, allow_failed=True, local_ipfs=False)
        assert result.revealed >= total * 0.9
        # Content check against what Pinata holds: the metadata names the image CID and every CID
        # is what the stand-in computed from the bytes it received.
        for token in Token.objects.filter(status="revealed"):
            metadata = json.loads(pinata.pins[token.metadata_cid]["data"])
            assert metadata["image"] == f"ipfs://{token.image_cid}"
            assert token.image_cid in pinata.pins
        proxy.stop()
    finally:
        replicate.stop()
        pinata.stop()


def test_a_reorg_removes_a_mint_the_webhook_announced(chaos_stack):
    """Scenario 6: the token is stopped with a reason and no reveal transaction reverts."""
    stack = chaos_stack(BATCH_REVEAL_WAIT_SECONDS="3")
    stack.start_web()
    stack.start_relay()
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[10], quantity=3)
    doomed = devnet.mint(chain, minter=accounts[3], prompt_author=accounts[11], quantity=2)
    assert wait_until(lambda: Token.objects.count() == 5, timeout=30)
    assert int(doomed["blockNumber"], 16) == chain.block_number()
    chain.rpc("anvil_reorg", [1, []])  # the block with tokens 4-5 is replaced by an empty one
    assert chain.next_token_id() == 4
    stack.start_cluster("c1")
    assert wait_until(lambda: all_done(5), timeout=120)
    gone = Token.objects.filter(pk__in=[4, 5])
    assert set(gone.values_list("status", flat=True)) == {"failed"}
    assert all("not on chain" in t.last_error for t in gone)
    assert set(Token.objects.filter(pk__lte=3).values_list("status", flat=True)) == {"revealed"}
    result = pipeline_audit(chain=chain, gateway_url=stack.web_url)
    assert result.problems == [] and result.on_chain == 3
