"""Pipeline throughput and per-token overhead with local providers and anvil (instant blocks).

    .venv/bin/python bench/pipeline.py throughput [--tokens 5000] [--clusters 2] [--runs 1]
    .venv/bin/python bench/pipeline.py latency [--samples 5]

throughput: N tokens are minted, recovered into the database at once (all `detected`), and the
clock runs until the last one is `revealed` with K qclusters of 4 workers. It also prints what the
run cost per token: SQL statements (pg_stat_statements), database time, and the CPU time of the
workers, PostgreSQL and anvil. The local providers render a 32-pixel image (LOCAL_IMAGE_SIZE) and
pin to disk, so the figure is the pipeline's own; their CPU cost per token is measured apart and
printed beside it.
latency: single mints through the whole path (relay → webhook → stages → keeper); mint-to-reveal
per token minus the configured batch wait.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fresh_database, measured, median, percentile, setup_django, write_results

BATCH_WAIT = 1.0
IMAGE_SIZE = 32


def provider_cpu_ms(size: int, samples: int = 300) -> float:
    """CPU milliseconds per token of the local providers themselves: render one image, pin it and
    a metadata document (content addressing and a file write each)."""
    from lifecycle.providers.images import LocalImageProvider
    from lifecycle.providers.ipfs import LocalPinner

    provider, pinner = (
        LocalImageProvider(size=size),
        LocalPinner(Path(tempfile.mkdtemp(prefix="glisk-pins-"))),
    )
    started = time.process_time()
    for n in range(samples):
        image = provider.generate(prompt=f"calibration {n}", token_id=n + 1)
        pinner.pin(data=image.data, filename="i.png", content_type="image/png", keyvalues={}, cid_version=1)
        document = b'{"name":"GLISK S0 #%d","image":"ipfs://bafy..."}' % n
        pinner.pin(
            data=document, filename="m.json", content_type="application/json", keyvalues={}, cid_version=0
        )
    return (time.process_time() - started) * 1000 / samples


def stack_for(url: str, *, clusters: int, web: bool, batch_size: int | None = None) -> object:
    from glisk.devtools.stack import Stack

    stack = Stack(
        var_dir=Path(tempfile.mkdtemp(prefix="glisk-bench-")),
        database_url=url,
        workers_per_cluster=4,
        extra_env={
            "BATCH_REVEAL_WAIT_SECONDS": str(BATCH_WAIT),
            "WATCHER_CONFIRMATIONS": "0",
            "LOG_LEVEL": "WARNING",
            "LOCAL_IMAGE_SIZE": str(IMAGE_SIZE),
            **({"WORKER_BATCH_SIZE": str(batch_size)} if batch_size else {}),
        },
    )
    stack.start_chain()
    if web:
        stack.start_web()
        stack.start_relay()
    for n in range(clusters):
        stack.start_cluster(f"cluster-{n + 1}")
    return stack


def throughput(
    tokens: int,
    clusters: int,
    *,
    batch_size: int | None = None,
    watch: Callable[[list[int]], Callable[[], None]] | None = None,
) -> dict[str, Any]:
    """`watch`, given the clusters' pids, starts watching them and returns how to stop (profiling)."""
    url = fresh_database("glisk_bench_pipeline")
    setup_django(url)
    from chain.services.recovery import tokens_recover
    from glisk.devtools import devnet
    from glisk.devtools.stack import mint_many, mint_plan, wait_until
    from lifecycle.models import Token

    stack = stack_for(url, clusters=0, web=False, batch_size=batch_size)
    try:
        chain = stack.chain()  # type: ignore[attr-defined]
        accounts = devnet.dev_accounts(chain)
        sizes = [50] * (tokens // 50) + ([tokens % 50] if tokens % 50 else [])
        mint_many(chain, sizes or mint_plan(tokens), authors=accounts[10:16], collectors=accounts[2:10])
        summary = tokens_recover(chain=chain)
        assert summary.recovered == tokens, summary
        with measured(url, tokens) as cost:
            started = time.perf_counter()
            procs = [stack.start_cluster(f"cluster-{n + 1}") for n in range(clusters)]  # type: ignore[attr-defined]
            stop_watching = watch([p.process.pid for p in procs]) if watch else None
            done = wait_until(
                lambda: Token.objects.filter(status="revealed").count() >= tokens,
                timeout=max(600, tokens / 5),
                interval=0.5,
            )
            elapsed = time.perf_counter() - started
            if stop_watching:
                stop_watching()
        revealed = Token.objects.filter(status="revealed").count()
        assert done, f"only {revealed} of {tokens} revealed"
        cost[0].print()
        return {
            "tokens": tokens,
            "clusters": clusters,
            "seconds": elapsed,
            "tokens_per_s": tokens / elapsed,
            **cost[0].summary(),
        }
    finally:
        stack.stop()  # type: ignore[attr-defined]


def latency(samples: int) -> dict[str, float]:
    url = fresh_database("glisk_bench_latency")
    setup_django(url)
    from glisk.devtools import devnet
    from glisk.devtools.stack import wait_until
    from lifecycle.models import Token

    stack = stack_for(url, clusters=1, web=True)
    try:
        chain = stack.chain()  # type: ignore[attr-defined]
        accounts = devnet.dev_accounts(chain)
        time.sleep(3)  # let the cluster's start-up tasks finish
        values = []
        for n in range(samples):
            token_id = chain.next_token_id()
            devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
            minted = time.time()
            assert wait_until(
                lambda t=token_id: Token.objects.filter(pk=t, status="revealed").exists(),
                timeout=60,
                interval=0.05,
            )
            token = Token.objects.get(pk=token_id)
            values.append(token.revealed_at.timestamp() - minted - BATCH_WAIT)
            print(f"  sample {n + 1}: {values[-1]:.2f}s")
        return {
            "samples": samples,
            "batch_wait_s": BATCH_WAIT,
            "overhead_p50_s": median(values),
            "overhead_max_s": max(values),
            "overhead_p95_s": percentile(values, 95),
        }
    finally:
        stack.stop()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--tokens", type=int, default=5000)
    t.add_argument("--clusters", type=int, default=2)
    t.add_argument("--runs", type=int, default=1)
    t.add_argument("--batch-size", type=int, help="WORKER_BATCH_SIZE (default: the setting's default, 10)")
    lat = sub.add_parser("latency")
    lat.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    if args.mode == "throughput":
        runs = [throughput(args.tokens, args.clusters, batch_size=args.batch_size) for _ in range(args.runs)]
        result: dict[str, Any] = {
            k: median([r[k] for r in runs]) for k in ("tokens", "clusters", "seconds", "tokens_per_s")
        }
        result["runs"] = runs
        result["provider_cpu_ms_per_token"] = provider_cpu_ms(IMAGE_SIZE)
        batches = f", batches of {args.batch_size}" if args.batch_size else ""
        print(
            f"pipeline: {args.tokens} tokens detected → revealed with {args.clusters} cluster(s) x 4 workers{batches}: "
            f"{result['seconds']:.1f}s, {result['tokens_per_s']:.1f} tokens/s (median of {args.runs} run(s)); "
            f"the local providers' own CPU: {result['provider_cpu_ms_per_token']:.2f} ms per token "
            f"({IMAGE_SIZE}-pixel image, two pins)"
        )
    else:
        result = latency(args.samples)
        print(
            f"per-token overhead (mint → revealed minus the {BATCH_WAIT:g}s batch wait): "
            f"p50 {result['overhead_p50_s']:.2f}s, max {result['overhead_max_s']:.2f}s over {args.samples} tokens"
        )
    path = write_results(f"pipeline-{args.mode}", {"args": vars(args), "results": result})
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
