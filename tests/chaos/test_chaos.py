"""Nothing is lost or duplicated when things break. Each scenario ends with the full audit.

The Replicate and Pinata stand-ins ration requests at the providers' documented limits (600
creates and 3,000 reads a minute; 180 a minute) and answer 429 past them, as the services do."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.db.models import F
from eth_account import Account

from chain.models import MintEvent, RevealTransaction, WebhookDelivery
from glisk import embedded_db
from glisk.backoffice.audit import pipeline_audit
from glisk.devtools import devnet
from glisk.devtools.relay import build_alchemy_payload, sign
from glisk.devtools.stack import mint_many, mint_plan, wait_until
from glisk.devtools.standins.base import documented_limits
from glisk.devtools.standins.pinata import PinataStandIn
from glisk.devtools.standins.replicate import ReplicateStandIn
from lifecycle.models import Token
from tests.chaos.conftest import scale
from tests.standins.rpc_proxy import RpcProxy

pytestmark = pytest.mark.slow


def all_done(total: int) -> bool:
    return Token.objects.filter(status__in=["revealed", "failed"]).count() >= total


def mint(stack, total, seed=7):
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    mint_many(chain, mint_plan(total, seed=seed), authors=accounts[10:16], collectors=accounts[2:10])
    return chain


def assert_invariants(stack, chain, total, *, outcome, allow_failed=False, local_ipfs=True):
    """The audit, then one line for docs/reliability.md's outcome table (`pytest -s` shows it)."""
    gateway = stack.web_url if local_ipfs and stack.procs else None
    result = pipeline_audit(chain=chain, gateway_url=gateway)
    failed = Token.objects.filter(status="failed").values_list("last_error", flat=True)
    reasons = Counter(error[:80] for error in failed)
    assert result.problems == []
    assert result.on_chain == total and result.unfinished == 0
    if not allow_failed:
        assert result.failed == 0, reasons
    content = f"{result.checked_content} checked over HTTP" if gateway else "content checked below"
    print(
        f"\n{outcome}: {total} minted, {result.revealed} revealed, {result.failed} failed "
        f"{dict(reasons) if reasons else ''}, {content}, audit clean"
    )
    return result


def test_sigkill_a_random_cluster_every_few_seconds(chaos_stack):
    """Scenario 1: clusters killed with SIGKILL (and restarted) while tokens flow. Images come
    from the Replicate stand-in (each prediction runs 0.05-0.3 s), so a kill lands while
    predictions are paid for and running: every token that did not fail is paid for once."""
    total = scale(80, 1000)
    replicate = documented_limits(ReplicateStandIn().start())
    replicate.run_seconds = (0.05, 0.3)
    try:
        stack = chaos_stack(
            IMAGE_PROVIDER="replicate", REPLICATE_API_TOKEN=replicate.token, REPLICATE_BASE_URL=replicate.url
        )
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
        paid = _paid_predictions(replicate)
        assert paid["without a stored id"] == 0
        assert paid["per token"] == {1: Token.objects.filter(status="revealed").count()}
        assert_invariants(
            stack,
            chain,
            total,
            outcome=f"scenario 1 ({kills} SIGKILLs; slowest mint → reveal {_slowest_seconds():.0f} s; "
            f"paid predictions per revealed token {paid['per token']}, "
            f"{paid['without a stored id']} without a stored id)",
        )
    finally:
        replicate.stop()


def _paid_predictions(replicate: ReplicateStandIn) -> dict:
    """How many predictions the stand-in created for each revealed token (by the ids the attempt
    rows hold), and how many it created that no attempt row knows."""
    from lifecycle.models import ImageJob

    rows = set(ImageJob.objects.exclude(external_id="").values_list("token_id", "external_id"))
    per_token = Counter(token_id for token_id, _ in rows)
    revealed = Token.objects.filter(status="revealed").values_list("token_id", flat=True)
    return {
        "per token": dict(Counter(per_token[t] for t in revealed)),
        "without a stored id": len(set(replicate.predictions) - {pid for _, pid in rows}),
    }


def _slowest_seconds() -> float:
    """The longest mint (block time) → reveal of the run."""
    rows = Token.objects.filter(status="revealed").values_list("revealed_at", "mint_event__block_timestamp")
    return max((revealed - minted).total_seconds() for revealed, minted in rows if minted)


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
    outcome = f"scenario 3 ({len(deliveries)} deliveries of {len(bodies)} blocks, all 200)"
    assert_invariants(stack, chain, total, outcome=outcome)


@pytest.mark.exclusive
@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="restarts the embedded PostgreSQL; DATABASE_URL is elsewhere"
)
def test_restarting_the_web_app_and_the_database_during_ingestion_loses_nothing(chaos_stack):
    """Scenario 2: the web app is SIGKILLed and PostgreSQL stopped (every session cut, down for
    3 s) while deliveries arrive and a cluster works. Every delivery answered 200 is stored, the
    ones that arrived during the outage were told to retry (503), and the run still finishes."""
    total = scale(60, 500)
    stack = chaos_stack()
    web = stack.start_web()
    stack.start_cluster("c1")
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    bodies = []
    for n, size in enumerate(mint_plan(total, seed=13)):
        receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[10 + n % 3], quantity=size)
        bodies.append(json.dumps(build_alchemy_payload(chain, int(receipt["blockNumber"], 16))).encode())
    secret = stack.info.webhook_secret
    answers: Counter[str] = Counter()
    ok_event_ids: list[str] = []
    pending = list(bodies)
    restarts: Counter[str] = Counter()
    outage: threading.Thread | None = None
    next_outage_at = 2
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
            answers["no answer"] += 1  # the app is restarting: Alchemy would retry
            time.sleep(0.1)
            continue
        answers[str(response.status_code)] += 1
        if response.status_code != 200:
            assert response.status_code == 503, response.text
            time.sleep(0.1)
            continue
        ok_event_ids.append(json.loads(body)["id"])
        pending.pop(0)
        answered = len(ok_event_ids)
        if answered % 4 == 1 and restarts["web"] < scale(2, 6):
            stack.kill(web)  # SIGKILL mid-stream
            restarts["web"] += 1
            web = stack.start_web()
        elif answered >= next_outage_at and restarts["database"] < scale(2, 6) and not outage_running(outage):
            outage = threading.Thread(target=cut_the_database, daemon=True)
            outage.start()
            restarts["database"] += 1
            next_outage_at = answered + 3
    if outage is not None:
        outage.join(timeout=120)
    connection.close()  # ours was cut with the rest
    stored = set(WebhookDelivery.objects.filter(outcome="processed").values_list("event_id", flat=True))
    assert set(ok_event_ids) <= stored
    assert Token.objects.count() == total
    assert restarts["web"] >= 2 and restarts["database"] >= 2
    assert answers["503"] >= 1, answers  # deliveries during the outage were asked to retry
    assert wait_until(lambda: all_done(total), timeout=300)
    outcome = f"scenario 2 (restarts {dict(restarts)}; answers {dict(answers)}; every 200 stored)"
    assert_invariants(stack, chain, total, outcome=outcome)


def cut_the_database() -> None:
    embedded_db.restart(settings.VAR_DIR, down_seconds=3)


def outage_running(outage: threading.Thread | None) -> bool:
    return outage is not None and outage.is_alive()


def test_provider_faults_nsfw_and_an_rpc_outage(chaos_stack):
    """Scenario 4: 30 % of Replicate and Pinata calls fail, 5 % of prompts are NSFW, the RPC
    refuses every request for a while mid-run."""
    total = scale(30, 500)
    replicate = documented_limits(ReplicateStandIn().start())
    pinata = documented_limits(PinataStandIn().start())
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
        result = assert_invariants(
            stack,
            chain,
            total,
            allow_failed=True,
            local_ipfs=False,
            outcome=f"scenario 4 (faults served: Replicate {dict(replicate.faults_served)}, "
            f"Pinata {dict(pinata.faults_served)}; {proxy.refused} RPC requests refused)",
        )
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


def test_keeper_killed_between_broadcast_and_receipt_and_a_dropped_transaction(chaos_stack):
    """Scenario 5, in the real processes. Blocks are mined only when the test says so, which
    holds each reveal transaction in the mempool long enough to kill its keeper there.

    Round 1: the keeper dies after broadcasting, and the transaction is dropped from the mempool;
    the next cluster's keeper sends the stored bytes again. Round 2: the keeper dies after
    broadcasting, and the transaction is mined while no keeper runs; the next one only records
    it. Neither round sends a second transaction for the same tokens."""
    stack = chaos_stack()
    stack.start_web()
    stack.start_relay()
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    keeper = Account.from_key(stack.info.keeper_private_key).address
    nonce_before = int(chain.rpc("eth_getTransactionCount", [keeper, "latest"]), 16)

    def hold_a_reveal_in_the_mempool(minted: int, quantity: int, cluster: str) -> RevealTransaction:
        devnet.mint(chain, minter=accounts[2], prompt_author=accounts[10], quantity=quantity)
        assert wait_until(lambda: Token.objects.count() == minted + quantity, timeout=60)
        chain.rpc("evm_setAutomine", [False])
        proc = stack.start_cluster(cluster)
        assert wait_until(lambda: RevealTransaction.objects.filter(status="sent").exists(), timeout=120)
        row = RevealTransaction.objects.get(status="sent")
        stack.kill(proc)  # between broadcast and receipt
        assert chain.rpc("eth_getTransactionReceipt", [row.tx_hash]) is None
        return row

    first = hold_a_reveal_in_the_mempool(0, 5, "c1")
    chain.rpc("anvil_dropTransaction", [first.tx_hash])
    assert chain.rpc("eth_getTransactionByHash", [first.tx_hash]) is None
    stack.start_cluster("c2")
    assert wait_until(lambda: chain.rpc("eth_getTransactionByHash", [first.tx_hash]) is not None, timeout=120)
    chain.rpc("evm_setAutomine", [True])
    chain.rpc("evm_mine")
    assert wait_until(lambda: all_done(5), timeout=120)
    c2 = next(p for p in stack.procs if p.name == "c2")
    stack.kill(c2)

    second = hold_a_reveal_in_the_mempool(5, 4, "c3")
    chain.rpc("evm_mine")  # mined while no keeper runs
    chain.rpc("evm_setAutomine", [True])
    stack.start_cluster("c4")
    assert wait_until(lambda: all_done(9), timeout=120)

    rows = {r.tx_hash: r.status for r in RevealTransaction.objects.all()}
    assert rows[first.tx_hash] == rows[second.tx_hash] == "confirmed"  # the same bytes, mined once
    assert set(rows.values()) == {"confirmed"}
    # Every transaction the keeper's address sent is one of our confirmed rows: nothing twice.
    assert int(chain.rpc("eth_getTransactionCount", [keeper, "latest"]), 16) - nonce_before == len(rows)
    assert_invariants(stack, chain, 9, outcome=f"scenario 5 ({len(rows)} reveals, 2 keepers killed)")


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
    print("\nscenario 6: 5 announced, 2 reorged away and failed with 'not on chain', 3 revealed, audit clean")


def test_operators_act_at_random_while_the_keeper_and_stages_work(chaos_stack):
    """Scenario 8: retry, regenerate, mark failed and reveal now on random tokens, from the same
    services the admin calls, while two clusters generate, pin and reveal. Every action either
    applies under the token's row lock or is refused with a reason; none is lost or doubled."""
    from lifecycle.models import TokenTransition
    from lifecycle.services.operator import (
        ActionRefused,
        operator_mark_failed,
        operator_regenerate,
        operator_retry,
        operator_reveal_now,
    )

    total = scale(60, 500)
    stack = chaos_stack()
    stack.start_web()
    stack.start_relay()
    stack.start_cluster("c1")
    stack.start_cluster("c2")
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    minting = threading.Thread(
        target=mint_many,
        args=(chain, mint_plan(total, seed=8)),
        kwargs={"authors": accounts[10:16], "collectors": accounts[2:10]},
    )
    minting.start()
    actions = {
        "retry": operator_retry,
        "regenerate": operator_regenerate,
        "mark failed": operator_mark_failed,
        "reveal now": operator_reveal_now,
    }
    names, weights = list(actions), [4, 3, 1, 3]
    rng = random.Random(8)
    applied: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    wanted = scale(200, 1500)
    deadline = time.monotonic() + scale(120, 600)
    while sum(applied.values()) + sum(refused.values()) < wanted and time.monotonic() < deadline:
        present = list(Token.objects.values_list("token_id", flat=True))
        if not present:
            time.sleep(0.2)
            continue
        name = rng.choices(names, weights)[0]
        try:
            actions[name](token_id=rng.choice(present), operator="chaos", reason=f"scenario 8: {name}")
            applied[name] += 1
        except ActionRefused:
            refused[name] += 1
        time.sleep(rng.uniform(0.0, 0.05))
    minting.join(timeout=120)
    assert applied["regenerate"] and applied["reveal now"] and applied["mark failed"]
    assert wait_until(lambda: all_done(total), timeout=300)
    moved = TokenTransition.objects.filter(actor="operator:chaos").exclude(from_status=F("to_status"))
    # Each applied action that changes a status left one timeline row naming the operator.
    changing = applied["retry"] + applied["regenerate"] + applied["mark failed"]
    assert moved.count() == changing
    for token in Token.objects.filter(status="failed"):
        assert token.last_error, token.pk
    assert_invariants(
        stack,
        chain,
        total,
        allow_failed=True,
        outcome=f"scenario 8 (operator actions applied {dict(applied)}, refused {dict(refused)})",
    )


def test_unexpected_exceptions_in_a_stage_and_an_absurd_retry_after(chaos_stack):
    """Scenario 9: about 10 % of generations end in a poll answer that cannot be read (after the
    prediction was paid for), and about 20 % of creates are refused with `Retry-After: inf` or
    `1e9`. Every token still finishes, each paid prediction is one recorded attempt (a garbled
    poll is read again, not bought again), and a 429 pauses the account no longer than
    THROTTLE_WAIT_MAX_SECONDS."""
    from lifecycle.models import ImageJob

    total = scale(40, 500)
    replicate = documented_limits(ReplicateStandIn().start())
    pinata = documented_limits(PinataStandIn().start())
    replicate.random_faults = ("garbage_poll", "429_retry_after_inf", "429_retry_after_huge")
    replicate.fault_rate = 0.3
    # One of each first, so the short run never misses a kind by chance (1 run in 25 did).
    replicate.inject(*replicate.random_faults)
    try:
        stack = chaos_stack(
            IMAGE_PROVIDER="replicate",
            REPLICATE_API_TOKEN=replicate.token,
            REPLICATE_BASE_URL=replicate.url,
            IPFS_PROVIDER="pinata",
            PINATA_JWT=pinata.jwt,
            PINATA_API_URL=pinata.url,
            IMAGE_MAX_ATTEMPTS="10",
            THROTTLE_WAIT_MAX_SECONDS="2",
        )
        stack.start_web()
        stack.start_relay()
        stack.start_cluster("c1")
        stack.start_cluster("c2")
        chain = mint(stack, total, seed=9)
        unfinished = Token.objects.exclude(status__in=["revealed", "failed"])
        assert wait_until(lambda: all_done(total), timeout=scale(240, 900)), list(
            unfinished.values_list("token_id", "status", "last_error")[:5]
        )
        served = replicate.faults_served
        assert served["garbage_poll"] and served["429_retry_after_inf"] and served["429_retry_after_huge"]
        # Paid work: every prediction the stand-in created is on exactly one attempt row, and a
        # token whose poll was garbled was not bought a second prediction.
        paid = list(ImageJob.objects.exclude(external_id="").values_list("external_id", flat=True))
        assert len(paid) == len(set(paid)) and set(paid) == set(replicate.predictions)
        assert _paid_predictions(replicate)["per token"] == {
            1: Token.objects.filter(status="revealed").count()
        }
        throttled = ImageJob.objects.filter(error_class="http_429").count()
        assert_invariants(
            stack,
            chain,
            total,
            allow_failed=True,
            local_ipfs=False,
            outcome=f"scenario 9 (faults served {dict(served)}; {throttled} attempts throttled, none "
            f"counted; {len(paid)} predictions paid, each on one attempt row)",
        )
    finally:
        replicate.stop()
        pinata.stop()


def test_the_rpc_swapped_for_another_chain_mid_run_and_back(chaos_stack):
    """Scenario 10: the pipeline's RPC endpoint starts answering for another chain (Base's id,
    the same contract address, its own mints) mid-run, then is put back. Meanwhile the keeper
    sends nothing and the watcher's cursor stays; /health says why; afterwards the run ends."""
    total = scale(40, 400)
    stack = chaos_stack(WATCHER_CONFIRMATIONS="1")
    other_port = devnet.free_port()
    other_process = devnet.start_anvil(port=other_port, chain_id=8453)
    try:
        from chain.adapter import GliskChain

        bare = GliskChain(rpc_url=f"http://127.0.0.1:{other_port}", contract_address="", chain_id=8453)
        other_info = devnet.provision(bare, rpc_url=bare._rpc_url)
        other = bare.with_contract(other_info.contract_address)
        assert other_info.contract_address == stack.info.contract_address  # the same address there
        other_accounts = devnet.dev_accounts(other)
        for _ in range(3):
            devnet.mint(other, minter=other_accounts[2], prompt_author=other_accounts[7], quantity=5)
        other.rpc("anvil_mine", [hex(200)])  # and further ahead
        stack.start_relay()  # Alchemy watches the real chain whatever our RPC says
        proxy = RpcProxy(stack.info.rpc_url).start()
        stack.extra_env["RPC_URL"] = proxy.url
        stack.start_web()
        stack.start_cluster("c1")
        stack.start_cluster("c2")
        chain = mint(stack, total, seed=10)
        assert wait_until(lambda: Token.objects.filter(status="revealed").count() >= total // 4, timeout=300)
        proxy.upstream = other._rpc_url
        assert wait_until(lambda: _health(stack)["status"] == "degraded", timeout=60)
        cursor_before = _watcher_cursor()  # once the guard has seen the other chain
        problem = _health(stack)["problems"][0]
        assert "serves another chain than NETWORK expects" in problem and "8453" not in problem
        chain.rpc("anvil_mine", [hex(20)])  # our chain moves on too: a following cursor would show it
        time.sleep(scale(5, 15))
        cursor_swapped = _watcher_cursor()
        assert cursor_swapped == cursor_before  # it read nothing, from either chain
        proxy.upstream = stack.info.rpc_url
        assert wait_until(lambda: all_done(total), timeout=300)
        confirmed = chain.block_number() - 1
        assert wait_until(lambda: (_watcher_cursor() or 0) >= confirmed, timeout=60)  # and it resumes
        assert wait_until(lambda: _health(stack)["status"] == "healthy", timeout=60)
        keeper = Account.from_key(stack.info.keeper_private_key).address
        assert other.transaction_count(keeper) == 0  # nothing was ever sent to the other chain
        assert Token.objects.count() == total  # and none of its mints were taken for ours
        proxy.stop()
        assert_invariants(
            stack,
            chain,
            total,
            outcome=f"scenario 10 (RPC on chain 8453 for a while: /health degraded, watcher cursor "
            f"stayed at block {cursor_before} while our chain moved 20 blocks and the other's head was "
            f"{other.block_number()}, then caught up to {_watcher_cursor()}; nothing sent there)",
        )
    finally:
        devnet.stop_process(other_process)


def _watcher_cursor() -> int | None:
    from glisk.core.models import SystemState

    row = (
        SystemState.objects.filter(key__startswith="watcher.cursor.").values_list("value", flat=True).first()
    )
    return int(row["block"]) if isinstance(row, dict) and "block" in row else None


def _health(stack) -> dict:
    return requests.get(f"{stack.web_url}/health", timeout=10).json()


def test_a_starved_replicate_account_and_a_cluster_killed_mid_run(chaos_stack):
    """Scenario 11: the Replicate account is held to 6 predictions a minute with a burst of 1 (an
    account low on credit), as the stand-in enforces and our budget is set, and a cluster is
    SIGKILLed while tokens wait their turn and predictions run. Every token is revealed, none
    fails, each is paid for once: throttling counts no attempt, and a prediction whose create
    was in flight when its worker died is found again, not bought again."""
    total = scale(6, 100)
    replicate = documented_limits(ReplicateStandIn().start(), create=(6.0, 1.0))
    replicate.run_seconds = (0.5, 1.5)
    try:
        stack = chaos_stack(
            IMAGE_PROVIDER="replicate",
            REPLICATE_API_TOKEN=replicate.token,
            REPLICATE_BASE_URL=replicate.url,
            REPLICATE_CREATES_PER_MINUTE="6",
            REPLICATE_CREATE_BURST="1",
            IMAGE_MAX_ATTEMPTS="2",
        )
        stack.start_web()
        stack.start_relay()
        clusters = [stack.start_cluster("c1"), stack.start_cluster("c2")]
        chain = mint(stack, total, seed=5)
        time.sleep(scale(15, 300))
        stack.kill(clusters.pop(0))
        clusters.append(stack.start_cluster("c1-restarted"))
        # 10 s a prediction at best; each 429 (our admissions and the stand-in's bucket, both at
        # 6 a minute with a burst of 1, drift apart by network jitter) pauses the account ~10 s.
        assert wait_until(lambda: all_done(total), timeout=total * 20 + 120), list(
            Token.objects.exclude(status="revealed").values_list("token_id", "status", "last_error")[:5]
        )
        paid = _paid_predictions(replicate)
        assert paid["without a stored id"] == 0
        assert paid["per token"] == {1: total}
        throttled = replicate.throttled_count
        assert_invariants(
            stack,
            chain,
            total,
            outcome=f"scenario 11 (Replicate at 6 a minute, burst 1; a cluster SIGKILLed; {throttled} "
            f"creates answered 429, none counted; paid predictions per token {paid['per token']})",
        )
    finally:
        replicate.stop()
