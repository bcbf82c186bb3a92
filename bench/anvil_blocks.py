"""What anvil itself costs per reveal as the collection grows: the CPU time of the anvil process
for the keeper's three calls on a 50-token batch (the on-chain pre-check, the gas estimate, the
mined reveal) once about 1,000, 5,000 and 10,000 tokens have been minted.

    .venv/bin/python bench/anvil_blocks.py [--sizes 1000 5000 10000] [--batches 10]

At each size `--batches` new batches of 50 are minted and then revealed, newest first. The
pipeline benchmark's chain is this anvil with instant blocks; none of this CPU is our code's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, process_cpu, setup_django, write_results

BATCH = 50
URI = "ipfs://QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # 53 bytes, as the IPFS stage writes


def cpu_seconds(pid: int) -> float:
    """anvil's own CPU seconds so far (not this script's: the calls' encoding and HTTP on our side
    are not anvil's)."""
    return process_cpu(Path(f"/proc/{pid}"), children=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--batches", type=int, default=10, help="reveals of 50 measured at each size")
    args = parser.parse_args()
    setup_django()
    from chain import abi
    from glisk.devtools import devnet
    from glisk.devtools.stack import Stack

    var_dir = Path(tempfile.mkdtemp(prefix="glisk-bench-"))
    stack = Stack(var_dir=var_dir, database_url="")
    rows = []
    try:
        stack.start_chain()
        chain = stack.chain()
        accounts = devnet.dev_accounts(chain)
        pid = stack.anvil_pid
        assert pid is not None
        minted = 0
        for size in sorted(args.sizes):
            # The measured batches are tokens minted for them, never revealed before.
            target = max(size, minted) + args.batches * BATCH
            while minted < target:
                devnet.mint(
                    chain,
                    minter=accounts[2 + minted // BATCH % 8],
                    prompt_author=accounts[12],
                    quantity=BATCH,
                )
                minted += BATCH
            spent = {"precheck": 0.0, "estimate": 0.0, "mined": 0.0}
            for n in range(args.batches):
                first = minted - (n + 1) * BATCH + 1
                ids = list(range(first, first + BATCH))
                data = abi.reveal_tokens_calldata(ids, [URI] * BATCH)
                before = cpu_seconds(pid)
                chain.token_states(ids)
                after_precheck = cpu_seconds(pid)
                chain.estimate_gas(sender=accounts[0], data=data)
                after_estimate = cpu_seconds(pid)
                devnet.send_and_wait(chain, {"from": accounts[0], "to": chain.contract_address, "data": data})
                spent["precheck"] += after_precheck - before
                spent["estimate"] += after_estimate - after_precheck
                spent["mined"] += cpu_seconds(pid) - after_estimate
            per_batch = {k: v * 1000 / args.batches for k, v in spent.items()}
            total = sum(per_batch.values())
            rows.append(
                {
                    "minted": minted,
                    "anvil_cpu_ms_per_batch": per_batch,
                    "anvil_cpu_ms_per_token": total / BATCH,
                }
            )
            print(
                f"{minted:>6} tokens minted: anvil CPU per 50-token reveal {total:6.1f} ms "
                f"(pre-check {per_batch['precheck']:.1f}, estimate {per_batch['estimate']:.1f}, "
                f"mined {per_batch['mined']:.1f}) = {total / BATCH:.2f} ms per token"
            )
    finally:
        stack.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
    path = write_results("anvil_blocks", {"args": vars(args), "results": rows})
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
