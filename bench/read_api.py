"""The frontend's read API under reveal-watching load: N watchers, each polling its author's token
list (`GET /api/authors/{wallet}/tokens?limit=20`) every 2 s, on a collection of M tokens.

    .venv/bin/python bench/read_api.py [--watchers 1000 ...] [--tokens 10000] [--seconds 30] [--web-workers 3]

An open-loop load (a request is due every 2 s per watcher whatever the answers take) from
`bench/read_load.mjs`, a Node client that costs the machine little, against gunicorn on the same
2 cores as PostgreSQL. For each number of watchers it reports the request rate, p50/p95/p99
latency counted from when each request was due, errors, the statements per request and the CPU
per request of the web workers, PostgreSQL and the load client, and writes them to
bench/results/. With Debian's `wrk` installed it then measures the capacity too: as many requests
as 64 connections get answered, each for a random author.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typing import Any

from bench.common import ROOT, fresh_database, gunicorn, measured, setup_django, write_results

PERIOD = 2.0


def seed(tokens: int, authors: int) -> list[str]:
    from authors.services import authors_ensure
    from lifecycle.models import Token, TokenStatus

    wallets = [f"0x{n:040x}" for n in range(1, authors + 1)]
    known, _ = authors_ensure(wallets=wallets)
    ids = [known[w.lower()].pk for w in wallets]
    statuses = [TokenStatus.REVEALED] * 7 + [TokenStatus.READY, TokenStatus.GENERATING, TokenStatus.DETECTED]
    Token.objects.bulk_create(
        [
            Token(
                token_id=i,
                author_id=ids[i % authors],
                status=statuses[i % len(statuses)],
                metadata_cid="QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
                image_cid="bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
            )
            for i in range(1, tokens + 1)
        ],
        batch_size=2000,
    )
    # Settle what the load would otherwise share the cores with: autovacuum's first pass over the
    # fresh rows and the checkpoint after them.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) lifecycle_token, authors_author")
        cursor.execute("CHECKPOINT")
    return [str(known[w.lower()].wallet_address) for w in wallets]


def load(base: str, wallets: list[str], watchers: int, seconds: float) -> dict[str, Any]:
    """Run the Node load client; its JSON figures."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("the read benchmark's load client needs Node (node on PATH)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(wallets))
    done = subprocess.run(
        [
            node,
            str(ROOT / "bench" / "read_load.mjs"),
            base,
            handle.name,
            str(watchers),
            str(PERIOD),
            str(seconds),
            str(watchers),  # a connection per watcher, as each browser tab has its own
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def wrk_capacity(base: str, wallets: list[str], seconds: float) -> dict[str, float] | None:
    import re

    if shutil.which("wrk") is None:
        return None
    script = (
        "wallets = {"
        + ",".join(f'"{w}"' for w in wallets)
        + "}\n"
        + (
            "request = function()\n"
            '  return wrk.format("GET", "/api/authors/" .. wallets[math.random(#wallets)] .. "/tokens?limit=20")\n'
            "end\n"
        )
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    done = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{int(seconds)}s", "--latency", "-s", handle.name, base],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    out = done.stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([0-9.]+)(us|ms|s)", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--watchers", type=int, nargs="+", default=[1000])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--authors", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=4)
    args = parser.parse_args()

    url = fresh_database("glisk_bench_read")
    setup_django(url)
    wallets = seed(args.tokens, args.authors)
    runs = []
    with gunicorn(url, workers=args.web_workers, worker_class="gthread", threads=args.web_threads) as base:
        load(base, wallets, 100, 4.0)  # warm every worker's connection and code paths
        for watchers in args.watchers:
            with measured(url, units=1) as cost:
                figures = load(base, wallets, watchers, args.seconds)
            cost[0].units = max(1, figures["answered"])
            cost[0].unit = "request"
            print(
                f"{watchers} watchers polling every {PERIOD:g} s on {args.tokens} tokens: "
                f"{figures['rate']:.0f} req/s (offered {watchers / PERIOD:.0f}), {figures['errors']} errors, "
                f"p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, "
                f"max {figures['max_ms']:.0f} ms; the load client used "
                f"{figures['client_cpu_seconds'] * 1000 / max(1, figures['answered']):.2f} ms of CPU per request"
            )
            cost[0].print()
            runs.append(
                {"watchers": watchers, "offered_rate": watchers / PERIOD, **figures, **cost[0].summary()}
            )
            time.sleep(2)
        capacity = wrk_capacity(base, wallets, min(args.seconds, 15))
    if capacity:
        print(
            f"capacity (wrk, 64 connections, random authors): {capacity['rate']:.0f} req/s, "
            f"p50 {capacity['p50_ms']:.0f} ms, p99 {capacity['p99_ms']:.0f} ms, {capacity['errors']} errors"
        )
    path = write_results(
        "read_api",
        {
            "tokens": args.tokens,
            "authors": args.authors,
            "web_workers": args.web_workers,
            "runs": runs,
            "wrk": capacity,
        },
    )
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
