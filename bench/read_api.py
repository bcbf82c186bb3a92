"""The frontend's read API under reveal-watching load: N watchers, each polling its author's token
list (`GET /api/authors/{wallet}/tokens?limit=20`) every 2 s, on a collection of M tokens.

    .venv/bin/python bench/read_api.py [--watchers 1000] [--tokens 10000] [--seconds 30] [--web-workers 3]

An open-loop load (a request is due every 2 s per watcher whatever the answers take, from an
asyncio client in its own process) against gunicorn on the same 2 cores as PostgreSQL; reports the
request rate reached, p50/p95/p99 latency, errors, and the client's own CPU time (it shares the
machine), and writes them to bench/results/. With Debian's `wrk` installed it then measures the
capacity too: as many requests as 64 connections get answered, each for a random author (wrk is
written in C, so the client costs the server little).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fresh_database, gunicorn, percentile, setup_django, write_results

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
    return [str(known[w.lower()].wallet_address) for w in wallets]


async def load(base: str, wallets: list[str], watchers: int, seconds: float) -> tuple[list[float], int, int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        deadline = time.monotonic() + seconds

        async def watcher(wallet: str) -> None:
            nonlocal errors, sent
            await asyncio.sleep(random.uniform(0, PERIOD))
            while time.monotonic() < deadline:
                due = time.monotonic() + PERIOD
                started = time.perf_counter()
                sent += 1
                try:
                    response = await client.get(f"/api/authors/{wallet}/tokens", params={"limit": 20})
                    if response.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        await asyncio.gather(*(watcher(random.choice(wallets)) for _ in range(watchers)))
    return latencies, errors, sent


def wrk_capacity(base: str, wallets: list[str], seconds: float) -> dict[str, float] | None:
    import re
    import shutil
    import tempfile

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
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--authors", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--web-workers", type=int, default=3)
    args = parser.parse_args()

    url = fresh_database("glisk_bench_read")
    setup_django(url)
    wallets = seed(args.tokens, args.authors)
    with gunicorn(url, workers=args.web_workers, worker_class="gthread", threads=4) as base:
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        latencies, errors, sent = asyncio.run(load(base, wallets, args.watchers, args.seconds))
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        capacity = wrk_capacity(base, wallets, args.seconds)
    client_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    rate = sent / args.seconds
    figures = {
        "watchers": args.watchers,
        "tokens": args.tokens,
        "offered_rate": args.watchers / PERIOD,
        "rate": rate,
        "requests": sent,
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "client_cpu_seconds": client_cpu,
        "web_workers": args.web_workers,
        "wrk": capacity,
    }
    print(
        f"{args.watchers} watchers polling every {PERIOD:g} s on {args.tokens} tokens: {rate:.0f} req/s "
        f"(offered {args.watchers / PERIOD:.0f}), {errors} errors, p50 {figures['p50_ms']:.0f} ms, "
        f"p95 {figures['p95_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms "
        f"(the load client itself used {client_cpu:.1f} s of CPU on the same cores)"
    )
    if capacity:
        print(
            f"capacity (wrk, 64 connections, random authors): {capacity['rate']:.0f} req/s, "
            f"p50 {capacity['p50_ms']:.0f} ms, p99 {capacity['p99_ms']:.0f} ms, {capacity['errors']} errors"
        )
    path = write_results("read_api", figures)
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
