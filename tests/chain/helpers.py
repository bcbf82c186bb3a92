from __future__ import annotations

import json

from glisk.devtools.relay import build_alchemy_payload, sign

SECRET = "whsec_test"


def post_delivery(client, payload, *, secret=SECRET, signature=None, body=None):
    raw = body if body is not None else json.dumps(payload).encode()
    headers = {}
    if signature is not False:
        headers["HTTP_X_ALCHEMY_SIGNATURE"] = signature if signature is not None else sign(raw, secret)
    return client.post("/webhooks/alchemy", data=raw, content_type="application/json", **headers)


def payload_for_receipt(chain, receipt):
    return build_alchemy_payload(chain, int(receipt["blockNumber"], 16))


def reveal_on_chain(chain, sender, token_ids, uris):
    """revealTokens from an unlocked admin account (the deployer holds DEFAULT_ADMIN_ROLE)."""
    from chain import abi
    from glisk.devtools import devnet

    data = abi.reveal_tokens_calldata(list(token_ids), list(uris))
    return devnet.send_and_wait(
        chain, {"from": sender, "to": chain.contract_address, "data": data, "gas": hex(3_000_000)}
    )
