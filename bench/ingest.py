"""Webhook ingestion throughput: signed 50-token deliveries against gunicorn from a load process.

    .venv/bin/python bench/ingest.py [--deliveries 200] [--runs 3] [--concurrency 8]

For 0 % and 30 % duplicate deliveries it reports tokens/s (new tokens written per second) and
p50/p99 request latency, as the median of --runs runs, with the statements and the CPU time of
the web workers and PostgreSQL per new token, and writes the figures to bench/results/.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import random
import secrets
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fresh_database, gunicorn, measured, median, percentile, write_results

CONTRACT = "0x" + "7a" * 20
SECRET = "whsec_bench"
TOPIC = "0x20c0d4a5bab7118059cf1d2fd0403c4f29a05e446d435b347f90b80778374c54"


def word(value: int) -> str:
    return f"{value:064x}"


def payload(start_id: int, quantity: int, block: int) -> bytes:
    author = secrets.token_hex(20) if random.random() < 0.2 else "ab" * 20
    log = {
        "index": 3,
        "account": {"address": CONTRACT},
        "topics": [
            TOPIC,
            "0x" + "0" * 24 + secrets.token_hex(20),
            "0x" + "0" * 24 + author,
            "0x" + word(start_id),
        ],
        "data": "0x" + word(quantity) + word(quantity * 10**15),
        "transaction": {
            "hash": "0x" + secrets.token_hex(32),
            "index": 0,
            "from": {"address": "0x" + "11" * 20},
            "to": {"address": CONTRACT},
            "status": 1,
        },
    }
    body = {
        "webhookId": "wh_bench",
        "id": "whevt_" + secrets.token_hex(6),
        "createdAt": "2026-01-01T00:00:00Z",
        "type": "GRAPHQL",
        "event": {
            "data": {
                "block": {
                    "hash": "0x" + secrets.token_hex(32),
                    "number": block,
                    "timestamp": 1_769_000_000 + block,
                    "logs": [log],
                }
            },
            "sequenceNumber": str(block),
            "network": "DEVNET",
        },
    }
    return json.dumps(body).encode()


def run_load(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    """Send `bodies` from `concurrency` threads, each waiting for its answer before it sends the
    next; returns the wall time, each request's latency and the new tokens the answers report.

    The senders run on the same two cores as the server, so they are kept cheap: the signatures
    are computed before the clock starts, and each thread speaks HTTP through `http.client` on its
    own connection (the `requests` session used before took 2 ms of CPU per delivery, 12 % of
    the CPU a delivery cost in all)."""
    target = urllib.parse.urlsplit(url)
    signed = [(body, hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()) for body in bodies]
    local = threading.local()

    def send(item: tuple[bytes, str]) -> tuple[float, int]:
        body, signature = item
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(target.netloc, timeout=30)
        connection = local.connection
        started = time.perf_counter()
        connection.request(
            "POST",
            target.path,
            body=body,
            headers={"Content-Type": "application/json", "X-Alchemy-Signature": signature},
        )
        response = connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {answer[:200]!r}")
        return elapsed, int(json.loads(answer).get("tokens_new", 0))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, signed))
    wall = time.perf_counter() - started
    return wall, [r[0] for r in results], sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated numbers of concurrent senders")
    parser.add_argument("--web-workers", type=int, default=3)
    args = parser.parse_args()

    url = fresh_database("glisk_bench_ingest")
    web = gunicorn(
        url,
        workers=args.web_workers,
        env={"GLISK_NFT_CONTRACT_ADDRESS": CONTRACT, "ALCHEMY_WEBHOOK_SECRET": SECRET},
    )
    with web as base:
        webhook = f"{base}/webhooks/alchemy"
        next_id, block = 1, 1
        report: dict[str, dict[str, Any]] = {}
        for concurrency, duplicate_share in [
            (int(c), d) for c in args.concurrency.split(",") for d in (0.0, 0.3)
        ]:
            runs = []
            with measured(url, units=1) as cost:
                for _ in range(args.runs):
                    bodies: list[bytes] = []
                    fresh: list[bytes] = []
                    for _ in range(args.deliveries):
                        if fresh and random.random() < duplicate_share:
                            bodies.append(random.choice(fresh))
                            continue
                        body = payload(next_id, 50, block)
                        fresh.append(body)
                        bodies.append(body)
                        next_id += 50
                        block += 1
                    wall, latencies, new_tokens = run_load(webhook, bodies, concurrency)
                    runs.append(
                        {
                            "tokens_per_s": new_tokens / wall,
                            "deliveries_per_s": len(bodies) / wall,
                            "p50_ms": percentile(latencies, 50) * 1000,
                            "p99_ms": percentile(latencies, 99) * 1000,
                            "new_tokens": new_tokens,
                        }
                    )
            label = f"{concurrency} sender(s), {int(duplicate_share * 100)}% duplicates"
            cost[0].units = max(1, sum(int(r["new_tokens"]) for r in runs))
            report[label] = {k: median([r[k] for r in runs]) for k in runs[0]}
            r = report[label]
            print(
                f"{label:>30}: {r['tokens_per_s']:8.0f} new tokens/s  {r['deliveries_per_s']:6.1f} deliveries/s  "
                f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  (median of {args.runs} runs of "
                f"{args.deliveries} deliveries x 50 tokens, gunicorn {args.web_workers} workers)"
            )
            cost[0].print()
            report[label]["cost"] = cost[0].summary()
        path = write_results("ingest", {"args": vars(args), "results": report})
        print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
