"""Mint-to-reveal latency with realistic provider and chain latencies, with or without a crash.

    .venv/bin/python bench/realistic.py [--tokens 200] [--seconds 60] [--kill-at 30] [--compare]

Replicate's stand-in runs each prediction for 1-3 s, Pinata's answers in 0.2-1 s, anvil mines a
block every 2 s; `--tokens` tokens are minted over `--seconds` seconds through the whole path
(relay, webhook, stages, keeper). Both stand-ins ration requests at the providers' documented
limits (Replicate 600 creates and 3,000 other requests a minute, Pinata 180 a minute with a
burst of 30) and answer 429 past them; `--no-limits` turns that off.

`--kill-at S` SIGKILLs every cluster (their workers with them, as an OOM kill or a lost node
would) S seconds into the run and starts them again at once. `--compare` runs without the kill
first, then with it. Each run reports p50/p95/max mint → reveal, the paid Replicate predictions
per token (and any the database has no id for), and, after a kill, how long the keeper took to
send its first reveal.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fresh_database, percentile, setup_django, write_results

BATCH_WAIT = 5.0


def run_once(args: argparse.Namespace, *, kill_at: float | None) -> dict[str, Any]:
    url = fresh_database("glisk_bench_realistic")
    setup_django(url)
    from django.db import connections

    from chain.models import RevealTransaction
    from glisk.devtools import devnet
    from glisk.devtools.stack import Stack, wait_until
    from glisk.devtools.standins.base import documented_limits
    from glisk.devtools.standins.pinata import PinataStandIn
    from glisk.devtools.standins.replicate import ReplicateStandIn
    from lifecycle.models import ImageJob, Token

    connections.close_all()
    replicate, pinata = ReplicateStandIn().start(), PinataStandIn().start()
    if not args.no_limits:
        documented_limits(replicate)
        documented_limits(pinata)
    replicate.latency, replicate.run_seconds = (0.02, 0.1), (1.0, 3.0)
    pinata.latency = (0.2, 1.0)
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
    restarted: dict[str, float] = {}
    try:
        stack.start_chain()
        stack.start_web()
        stack.start_relay()
        clusters = [stack.start_cluster(f"cluster-{n + 1}") for n in range(args.clusters)]
        chain = stack.chain()
        accounts = devnet.dev_accounts(chain)
        rng = random.Random(1)
        minted: dict[int, float] = {}
        started = time.time()

        def crash() -> None:
            for proc in clusters:
                stack.kill(proc)
            restarted["at"] = time.time()
            restarted["ready_then"] = Token.objects.filter(status="ready", reveal_transaction=None).count()
            for n in range(args.clusters):
                stack.start_cluster(f"cluster-{n + 1}-restarted")
            connections.close_all()

        killer = threading.Timer(kill_at, crash) if kill_at is not None else None
        if killer is not None:
            killer.start()
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
        if killer is not None:
            killer.join()
        assert wait_until(
            lambda: Token.objects.filter(status__in=["revealed", "failed"]).count() >= args.tokens,
            timeout=900,
        )
        revealed = list(Token.objects.filter(status="revealed"))
        latencies = [t.revealed_at.timestamp() - minted[t.pk] for t in revealed]
        slowest = max(revealed, key=lambda t: t.revealed_at.timestamp() - minted[t.pk])
        # Paid work: every prediction the stand-in created, against the ids the attempt rows hold.
        known = Counter(
            token_id
            for token_id, _ in ImageJob.objects.exclude(external_id="")
            .values_list("token", "external_id")
            .distinct()
        )
        stored_ids = set(ImageJob.objects.exclude(external_id="").values_list("external_id", flat=True))
        created = set(replicate.predictions)
        per_token = Counter(known[t.pk] for t in revealed)
        result: dict[str, Any] = {
            "tokens": args.tokens,
            "revealed": len(revealed),
            "failed": Token.objects.filter(status="failed").count(),
            "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95),
            "max_s": max(latencies),
            "slowest_token": slowest.pk,
            "predictions_created": len(created),
            "predictions_per_revealed_token": {str(k): v for k, v in sorted(per_token.items())},
            "predictions_without_a_stored_id": len(created - stored_ids),
            "kill_at_s": kill_at,
            "failed_reasons": dict(
                Counter(
                    e[:120]
                    for e in Token.objects.filter(status="failed").values_list("last_error", flat=True)
                )
            ),
            "http_429": {"replicate": replicate.throttled_count, "pinata": pinata.throttled_count},
            "requests": {"replicate": len(replicate.requests), "pinata": len(pinata.requests)},
        }
        if "at" in restarted:
            first_after = (
                RevealTransaction.objects.filter(created_at__gt=_aware(restarted["at"]))
                .order_by("created_at")
                .values_list("created_at", flat=True)
                .first()
            )
            result["ready_at_restart"] = restarted["ready_then"]
            result["first_reveal_after_restart_s"] = (
                first_after.timestamp() - restarted["at"] if first_after else None
            )
        return result
    finally:
        stack.stop()
        replicate.stop()
        pinata.stop()


def _aware(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


def describe(result: dict[str, Any]) -> str:
    line = (
        f"{'kill at ' + format(result['kill_at_s'], 'g') + ' s' if result['kill_at_s'] else 'no kill'}: "
        f"{result['revealed']}/{result['tokens']} revealed ({result['failed']} failed); mint → reveal "
        f"p50 {result['p50_s']:.1f} s, p95 {result['p95_s']:.1f} s, slowest {result['max_s']:.1f} s "
        f"(#{result['slowest_token']}); paid predictions {result['predictions_created']}, per revealed "
        f"token {result['predictions_per_revealed_token']}, without a stored id "
        f"{result['predictions_without_a_stored_id']}; 429s {result['http_429']} of requests "
        f"{result['requests']}"
    )
    if result["failed_reasons"]:
        line += f"; failed because {result['failed_reasons']}"
    if result.get("first_reveal_after_restart_s") is not None:
        line += (
            f"; first reveal sent {result['first_reveal_after_restart_s']:.1f} s after the restart "
            f"({result['ready_at_restart']} tokens were ready then)"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--kill-at", type=float, default=None, help="SIGKILL every cluster after S seconds")
    parser.add_argument("--compare", action="store_true", help="run once without the kill, then with it")
    parser.add_argument("--no-limits", action="store_true", help="stand-ins that never answer 429")
    args = parser.parse_args()
    runs = []
    if args.compare:
        runs.append(run_once(args, kill_at=None))
        print(describe(runs[-1]), flush=True)
    runs.append(run_once(args, kill_at=args.kill_at))
    print(describe(runs[-1]), flush=True)
    if len(runs) == 2 and args.kill_at is not None:
        print(f"the kill cost the slowest token {runs[1]['max_s'] - runs[0]['max_s']:+.1f} s")
    critical = 2.0 + 2 * 0.6 + BATCH_WAIT + 2.0
    print(
        f"critical path ≈ {critical:.1f} s (generation ~2 s + 2 uploads ~0.6 s each + batch wait "
        f"{BATCH_WAIT:g} s + a 2 s block)"
    )
    path = write_results("realistic", {"args": vars(args), "results": runs})
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
