"""Reveal gas per token for batch sizes 1 to 50 on anvil, with the metadata URIs the IPFS stage
writes now (`ipfs://` + CIDv0, 53 bytes) and the CIDv1 ones it wrote before (66 bytes).

.venv/bin/python bench/gas.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, devnet_chain, setup_django, write_results

SIZES = [1, 2, 5, 10, 20, 30, 40, 50]


def main() -> None:
    setup_django()
    from django.conf import settings

    from chain import abi
    from glisk.devtools import devnet
    from lifecycle.providers.ipfs import cid_v0, cid_v1

    with devnet_chain() as chain:
        accounts = devnet.dev_accounts(chain)
        chosen = settings.GLISK.batch_reveal_max_tokens  # what the keeper fills a batch up to
        rows = []
        for size in sorted({*SIZES, chosen}):
            row: dict[str, float] = {"batch": size}
            for label, cid in (("cidv0", cid_v0), ("cidv1", cid_v1)):
                start = chain.next_token_id()
                devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=size)
                ids = list(range(start, start + size))
                uris = [f"ipfs://{cid(os.urandom(64))}" for _ in ids]
                data = abi.reveal_tokens_calldata(ids, uris)
                receipt = devnet.send_and_wait(
                    chain, {"from": accounts[0], "to": chain.contract_address, "data": data}
                )
                gas = int(receipt["gasUsed"], 16)
                row[f"gas_{label}"] = gas
                row[f"gas_per_token_{label}"] = gas / size
            rows.append(row)
            print(
                f"batch {size:>2}: CIDv0 URIs {row['gas_per_token_cidv0']:>9,.0f} gas per token   "
                f"(CIDv1 URIs {row['gas_per_token_cidv1']:>9,.0f})"
            )
        keeper = next(r for r in rows if r["batch"] == chosen)
        print(
            f"the keeper fills batches up to BATCH_REVEAL_MAX_TOKENS={chosen}: "
            f"{keeper['gas_per_token_cidv0']:,.0f} gas per token, "
            f"{rows[0]['gas_per_token_cidv0'] / keeper['gas_per_token_cidv0']:.2f}x cheaper than one by one, "
            f"{1 - keeper['gas_per_token_cidv0'] / keeper['gas_per_token_cidv1']:.0%} less than with CIDv1 URIs"
        )
        path = write_results("gas", {"results": rows, "keeper_batch": chosen})
        print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
