"""Reveal gas per token for batch sizes 1 to 50, with real CIDv1 metadata URIs, on anvil.

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
    from lifecycle.providers.ipfs import cid_v1

    with devnet_chain() as chain:
        accounts = devnet.dev_accounts(chain)
        chosen = settings.GLISK.batch_reveal_max_tokens  # what the keeper fills a batch up to
        rows = []
        for size in sorted({*SIZES, chosen}):
            start = chain.next_token_id()
            devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=size)
            ids = list(range(start, start + size))
            uris = [f"ipfs://{cid_v1(os.urandom(64))}" for _ in ids]
            data = abi.reveal_tokens_calldata(ids, uris)
            receipt = devnet.send_and_wait(
                chain, {"from": accounts[0], "to": chain.contract_address, "data": data}
            )
            gas = int(receipt["gasUsed"], 16)
            rows.append({"batch": size, "gas": gas, "gas_per_token": gas / size})
            print(f"batch {size:>2}: {gas:>9,} gas  {gas / size:>9,.0f} per token")
        keeper = next(r for r in rows if r["batch"] == chosen)
        print(
            f"the keeper fills batches up to BATCH_REVEAL_MAX_TOKENS={chosen}: {keeper['gas_per_token']:,.0f} "
            f"gas per token, {rows[0]['gas_per_token'] / keeper['gas_per_token']:.2f}x cheaper than one by one"
        )
        path = write_results("gas", {"results": rows, "keeper_batch": chosen})
        print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
