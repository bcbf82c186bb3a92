"""A mint-out under the providers' documented rate limits: does the tightest limit set the pace?

    .venv/bin/python bench/mintout.py [--tokens 2000] [--seconds 60] [--clusters 3]

`--tokens` tokens are minted within `--seconds` seconds by 20 collectors for 10 authors on
anvil (a block every 2 s), and go through the whole path (relay → webhook → stages → keeper) on
`--clusters` clusters. The stand-ins ration requests as the real services document: Replicate
600 prediction creates and 3,000 other requests a minute, Pinata 180 requests a minute, and the
RPC (a front for anvil that prices each method as Alchemy does) 330 compute units a second.
Replicate's predictions run 1-3 s, Pinata answers in 0.2-1 s.

It prints what was revealed and failed, first mint → last reveal, the bound each provider's limit
sets on that (its minimum requests, less its burst, at its rate; the tightest is the bound), the
run's ratio to the bound, 429s, requests per token per provider, compute units per token, paid
predictions per token and gas per token, and writes them to bench/results/.
"""

from __future__ import annotations

import argparse
import math
import queue
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fresh_database, percentile, setup_django, write_results

BLOCK_TIME = 2.0
BATCH_REVEAL_WAIT = 5.0
WORKER_BATCH = 50
COLLECTORS = 20
AUTHORS = 10
RPC_CU_PER_SECOND = 330.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = fresh_database("glisk_bench_mintout")
    setup_django(url)
    from django.db import connections
    from django.db.models import Sum

    from chain.models import RevealTransaction
    from glisk.core.models import ProviderBudget
    from glisk.devtools import devnet
    from glisk.devtools.stack import Stack, mint_plan, wait_until
    from glisk.devtools.standins.base import DOCUMENTED_LIMITS, documented_limits
    from glisk.devtools.standins.pinata import PinataStandIn
    from glisk.devtools.standins.replicate import ReplicateStandIn
    from glisk.devtools.standins.rpc import RpcStandIn
    from lifecycle.models import ImageJob, Token

    connections.close_all()
    replicate = documented_limits(ReplicateStandIn().start())
    pinata = documented_limits(PinataStandIn().start())
    replicate.latency, replicate.run_seconds = (0.02, 0.1), (1.0, 3.0)
    pinata.latency = (0.2, 1.0)
    stack = Stack(
        var_dir=Path(tempfile.mkdtemp(prefix="glisk-bench-")),
        database_url=url,
        block_time=BLOCK_TIME,
        workers_per_cluster=4,
        extra_env={
            "BATCH_REVEAL_WAIT_SECONDS": str(BATCH_REVEAL_WAIT),
            "WATCHER_CONFIRMATIONS": "2",
            "LOG_LEVEL": "WARNING",
            "IMAGE_PROVIDER": "replicate",
            "REPLICATE_API_TOKEN": replicate.token,
            "REPLICATE_BASE_URL": replicate.url,
            "IPFS_PROVIDER": "pinata",
            "PINATA_JWT": pinata.jwt,
            "PINATA_API_URL": pinata.url,
            "WORKER_BATCH_SIZE": str(WORKER_BATCH),
        },
    )
    rpc: RpcStandIn | None = None
    try:
        info = stack.start_chain()
        rpc = RpcStandIn(info.rpc_url, cu_per_second=RPC_CU_PER_SECOND).start()
        # The relay stands in for Alchemy's webhooks (not metered in compute units): it reads
        # anvil itself. Everything of ours reads the chain through the rationed front.
        stack.start_relay()
        stack.extra_env.update(
            {
                "RPC_URL": rpc.url,
                # Our side of the limit: the documented rate, and less of a burst than the
                # provider allows (their bucket and ours do not start at the same instant).
                "RPC_COMPUTE_UNITS_PER_SECOND": str(RPC_CU_PER_SECOND),
                "RPC_COMPUTE_UNITS_BURST": str(RPC_CU_PER_SECOND * 3),
            }
        )
        stack.start_web()
        for n in range(args.clusters):
            stack.start_cluster(f"cluster-{n + 1}")
        chain = stack.chain()
        accounts = devnet.dev_accounts(chain)
        collectors = accounts[:COLLECTORS]
        authors = [f"0x{n + 1:040x}" for n in range(0xA000, 0xA000 + AUTHORS)]
        sizes = mint_plan(args.tokens, seed=11)
        minted: dict[int, float] = {}
        first_mint = time.time()
        _mint_out(info.rpc_url, info.contract_address, sizes, collectors, authors, args.seconds, minted)
        mint_seconds = time.time() - first_mint
        done = Token.objects.filter(status__in=["revealed", "failed"])
        assert wait_until(lambda: done.count() >= args.tokens, timeout=args.timeout), (
            f"only {done.count()} of {args.tokens} finished"
        )
        revealed = list(Token.objects.filter(status="revealed"))
        failed = Token.objects.filter(status="failed")
        last_reveal = max(t.revealed_at.timestamp() for t in revealed) if revealed else time.time()
        latencies = [t.revealed_at.timestamp() - minted[t.pk] for t in revealed if t.pk in minted]
        elapsed = last_reveal - first_mint

        paid = Counter(
            token_id
            for token_id, _ in ImageJob.objects.exclude(external_id="")
            .values_list("token", "external_id")
            .distinct()
        )
        creates = replicate.creates
        reads = sum(1 for r in replicate.requests if r["method"] == "GET" and r["path"].startswith("/v1/"))
        pinata_requests = len(pinata.requests)
        gas = RevealTransaction.objects.filter(status="confirmed").aggregate(gas=Sum("gas_used"))["gas"] or 0
        n = args.tokens
        bounds = _bounds(
            tokens=n,
            batch=WORKER_BATCH,
            compute_units=rpc.compute_units,
            limits=DOCUMENTED_LIMITS,
        )
        bound = max(b["seconds"] for b in bounds.values())
        tightest = max(bounds, key=lambda k: bounds[k]["seconds"])
        budgets = {
            b.name: {"admitted": b.admitted, "throttled": b.throttled, "waited_s": round(b.waited_seconds, 1)}
            for b in ProviderBudget.objects.all()
        }
        return {
            "tokens": n,
            "revealed": len(revealed),
            "failed": failed.count(),
            "failed_reasons": list(failed.values_list("last_error", flat=True)[:5]),
            "minting_s": round(mint_seconds, 1),
            "first_mint_to_last_reveal_s": round(elapsed, 1),
            "bound_s": round(bound, 1),
            "tightest_limit": tightest,
            "bounds": bounds,
            "ratio_to_bound": round(elapsed / bound, 3),
            "mint_to_reveal_p50_s": round(percentile(latencies, 50), 1),
            "mint_to_reveal_max_s": round(max(latencies), 1) if latencies else None,
            "http_429": {
                "replicate": replicate.throttled_count,
                "pinata": pinata.throttled_count,
                "rpc": rpc.throttled_count,
            },
            "requests": {
                "replicate": len([r for r in replicate.requests if r["path"].startswith("/v1/")]),
                "pinata": pinata_requests,
                "rpc": sum(rpc.methods.values()) + rpc.throttled_count,
            },
            "requests_per_token": {
                "replicate_create": round(creates / n, 3),
                "replicate_read": round(reads / n, 3),
                "pinata": round(pinata_requests / n, 3),
                "rpc_calls": round(sum(rpc.methods.values()) / n, 2),
            },
            "rpc_methods": dict(rpc.methods.most_common()),
            "compute_units_per_token": round(rpc.compute_units / n, 1),
            "paid_predictions_per_token": dict(Counter(paid[t.pk] for t in revealed)),
            "predictions_created": len(replicate.predictions),
            "gas_per_token": round(gas / len(revealed)) if revealed else None,
            "budgets": budgets,
        }
    finally:
        stack.stop()
        for server in (replicate, pinata, rpc):
            if server is not None:
                server.stop()


def _bounds(
    *, tokens: int, batch: int, compute_units: int, limits: dict[str, dict[str, tuple[float, float]]]
) -> dict[str, dict[str, Any]]:
    """The shortest time each provider's limit allows the mint-out: the requests it must serve,
    less the burst its bucket starts with, at its rate."""
    create_rate, create_burst = limits["replicate"]["create"]
    pinata_rate, pinata_burst = limits["pinata"]["api"]
    uploads = 2 * math.ceil(tokens / batch)
    cu_burst = RPC_CU_PER_SECOND * 10
    return {
        "replicate_create": {
            "how": f"({tokens} creates - {create_burst:g} burst) / {create_rate / 60:g} a second",
            "seconds": max(0.0, tokens - create_burst) / (create_rate / 60),
        },
        "pinata": {
            "how": f"(2 directory uploads x {math.ceil(tokens / batch)} batches of {batch} - "
            f"{pinata_burst:g} burst) / {pinata_rate / 60:g} a second",
            "seconds": max(0.0, uploads - pinata_burst) / (pinata_rate / 60),
        },
        "rpc": {
            "how": f"({compute_units} compute units used - {cu_burst:g} burst) / {RPC_CU_PER_SECOND:g} a second",
            "seconds": max(0.0, compute_units - cu_burst) / RPC_CU_PER_SECOND,
        },
    }


def _mint_out(
    rpc_url: str,
    contract: str,
    sizes: list[int],
    collectors: list[str],
    authors: list[str],
    seconds: float,
    minted: dict[int, float],
) -> None:
    """Send every mint of `sizes` within `seconds`, from each collector in its own thread (one
    transaction in flight per collector), authors in turn; records each token's mint time."""
    from glisk.devtools import devnet

    plan: queue.Queue[tuple[int, int, float]] = queue.Queue()
    start = time.time()
    for n, size in enumerate(sizes):
        plan.put((n, size, start + seconds * n / len(sizes)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def collector(address: str) -> None:
        from chain.adapter import GliskChain

        chain = GliskChain(rpc_url=rpc_url, contract_address=contract, chain_id=devnet.DEVNET_CHAIN_ID)
        while True:
            try:
                n, size, at = plan.get_nowait()
            except queue.Empty:
                return
            time.sleep(max(0.0, at - time.time()))
            try:
                receipt = devnet.mint(
                    chain, minter=address, prompt_author=authors[n % len(authors)], quantity=size
                )
            except BaseException as exc:  # reported after the others finish
                errors.append(exc)
                return
            first = _first_token(receipt)
            with lock:
                minted.update(dict.fromkeys(range(first, first + size), time.time()))

    threads = [threading.Thread(target=collector, args=(a,)) for a in collectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _first_token(receipt: dict[str, Any]) -> int:
    from chain import abi

    for log in receipt["logs"]:
        if log["topics"][0] == abi.BATCH_MINTED_TOPIC:
            return int(log["topics"][3], 16)
    raise RuntimeError("the mint emitted no BatchMinted")


def describe(r: dict[str, Any]) -> str:
    lines = [
        f"tokens: {r['tokens']} minted in {r['minting_s']} s; {r['revealed']} revealed, {r['failed']} failed",
        f"first mint → last reveal: {r['first_mint_to_last_reveal_s']} s "
        f"(mint → reveal p50 {r['mint_to_reveal_p50_s']} s, slowest {r['mint_to_reveal_max_s']} s)",
        f"bound set by the tightest limit ({r['tightest_limit']}): {r['bound_s']} s; run / bound = "
        f"{r['ratio_to_bound']}",
    ]
    lines += [f"  {name}: {b['how']} = {b['seconds']:.1f} s" for name, b in r["bounds"].items()]
    lines += [
        f"429s received: {r['http_429']} of requests {r['requests']}",
        f"requests per token: {r['requests_per_token']}",
        f"compute units per token: {r['compute_units_per_token']}",
        f"paid predictions per token: {r['paid_predictions_per_token']} ({r['predictions_created']} created)",
        f"gas per token: {r['gas_per_token']}",
        f"shared budgets: {r['budgets']}",
    ]
    if r["failed"]:
        lines.append(f"failed because: {r['failed_reasons']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0, help="mint them all within this")
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up waiting after this")
    args = parser.parse_args()
    result = run(args)
    print(describe(result), flush=True)
    path = write_results("mintout", {"args": vars(args), "result": result})
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
