"""Mint-to-reveal latency with realistic provider and chain latencies.

    .venv/bin/python bench/realistic.py [--tokens 200] [--seconds 60]

The Replicate stand-in answers in 1-3 s, the Pinata one in 0.2-1 s, anvil mines a block every
2 s; `--tokens` tokens are minted over `--seconds` seconds through the whole path (relay,
webhook, stages, keeper). Reports p50/p95 mint-to-reveal against the critical path
(generation + two uploads + batch wait + a block).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fresh_database, percentile, setup_django, write_results

BATCH_WAIT = 5.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clusters", type=int, default=2)
    args = parser.parse_args()
    url = fresh_database("glisk_bench_realistic")
    setup_django(url)
    from glisk.devtools import devnet
    from glisk.devtools.stack import Stack, wait_until
    from lifecycle.models import Token
    from tests.standins.pinata import PinataStandIn
    from tests.standins.replicate import ReplicateStandIn

    replicate, pinata = ReplicateStandIn().start(), PinataStandIn().start()
    replicate.latency, pinata.latency = (1.0, 3.0), (0.2, 1.0)
    stack = Stack(
        var_dir=Path(tempfile.mkdtemp(prefix="glisk-bench-")),
        database_url=url,
        block_time=2.0,
        workers_per_cluster=4,
        extra_env={
            "BATCH_REVEAL_WAIT_SECONDS": str(BATCH_WAIT),
            "WATCHER_CONFIRMATIONS": "2",
            "LOG_LEVEL": "WARNING",
            "IMAGE_PROVIDER": "replicate",
            "REPLICATE_API_TOKEN": replicate.token,
            "REPLICATE_BASE_URL": replicate.url,
            "IPFS_PROVIDER": "pinata",
            "PINATA_JWT": pinata.jwt,
            "PINATA_API_URL": pinata.url,
            "WORKER_BATCH_SIZE": "4",
        },
    )
    try:
        stack.start_chain()
        stack.start_web()
        stack.start_relay()
        for n in range(args.clusters):
            stack.start_cluster(f"cluster-{n + 1}")
        chain = stack.chain()
        accounts = devnet.dev_accounts(chain)
        rng = random.Random(1)
        minted: dict[int, float] = {}
        started = time.time()
        left = args.tokens
        while left:
            size = min(left, rng.choice([1, 1, 2, 3, 5]))
            first = chain.next_token_id()
            devnet.mint(
                chain, minter=accounts[2 + left % 8], prompt_author=accounts[10 + left % 4], quantity=size
            )
            now = time.time()
            minted.update(dict.fromkeys(range(first, first + size), now))
            left -= size
            time.sleep(max(0.0, args.seconds * (args.tokens - left) / args.tokens - (time.time() - started)))
        assert wait_until(lambda: Token.objects.filter(status="revealed").count() >= args.tokens, timeout=600)
        latencies = [
            t.revealed_at.timestamp() - minted[t.pk] for t in Token.objects.filter(status="revealed")
        ]
        critical = 2.0 + 2 * 0.6 + BATCH_WAIT + 2.0  # mean generation + two uploads + batch wait + a block
        result = {
            "tokens": args.tokens,
            "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95),
            "max_s": max(latencies),
            "critical_path_s": critical,
        }
        print(
            f"mint → reveal over {args.tokens} tokens minted in {args.seconds:g}s: p50 {result['p50_s']:.1f}s, "
            f"p95 {result['p95_s']:.1f}s, max {result['max_s']:.1f}s; critical path ≈ {critical:.1f}s "
            f"(generation ~2 s + 2 uploads ~0.6 s each + batch wait {BATCH_WAIT:g} s + a 2 s block)"
        )
        path = write_results("realistic", {"args": vars(args), "results": result})
        print(f"results: {path.relative_to(ROOT)}")
    finally:
        stack.stop()
        replicate.stop()
        pinata.stop()


if __name__ == "__main__":
    main()
