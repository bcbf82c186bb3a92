"""`recover_tokens` time for N missing tokens on anvil, with the statements and CPU per token of
the last run (recovery runs in this process; anvil answers its reads).

.venv/bin/python bench/recover.py [--tokens 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, devnet_chain, fresh_database, measured, median, setup_django, write_results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = fresh_database("glisk_bench_recover")
    setup_django(url)
    from chain.services.recovery import tokens_recover
    from glisk.devtools import devnet
    from lifecycle.models import Token

    with devnet_chain() as chain:
        accounts = devnet.dev_accounts(chain)
        started = time.perf_counter()
        left = args.tokens
        n = 0
        while left:
            size = min(50, left)
            devnet.mint(chain, minter=accounts[2 + n % 8], prompt_author=accounts[10 + n % 2], quantity=size)
            left -= size
            n += 1
        print(f"minted {args.tokens} tokens in {time.perf_counter() - started:.1f}s")
        times = []
        for run in range(args.runs):
            if run:
                Token.objects.all().delete()
            with measured(url, args.tokens) as cost:
                started = time.perf_counter()
                summary = tokens_recover(chain=chain)
                times.append(time.perf_counter() - started)
            assert summary.recovered == args.tokens and summary.remaining == 0, summary
        result = {
            "tokens": args.tokens,
            "seconds_median": median(times),
            "seconds_runs": times,
            "tokens_per_s": args.tokens / median(times),
        }
        print(
            f"recover_tokens for {args.tokens} missing tokens: {median(times):.2f}s median of {args.runs} runs "
            f"({result['tokens_per_s']:.0f} tokens/s; runs: {', '.join(f'{t:.2f}s' for t in times)})"
        )
        cost[0].print()  # the last run
        result["cost"] = cost[0].summary()
        path = write_results("recover", {"args": vars(args), "results": result})
        print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
