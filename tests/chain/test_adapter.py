"""The chain adapter against a real anvil: views, batching, events, reverts, failures."""

from __future__ import annotations

import pytest
from eth_abi import encode

from chain import abi
from chain.adapter import GliskChain
from chain.errors import (
    AlreadyRevealed,
    ContractRevert,
    LengthMismatch,
    RpcUnavailable,
    Unauthorized,
    WrongChain,
    decode_revert,
)
from glisk.devtools import devnet
from tests.chain.helpers import reveal_on_chain


def test_views_and_batched_token_states(chain, accounts):
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=3)
    reveal_on_chain(chain, accounts[0], [2], ["ipfs://bafkfoo"])
    assert chain.next_token_id() == 4
    states = chain.token_states([1, 2, 3, 99])
    assert states[1].prompt_author == accounts[3] and not states[1].revealed
    assert states[1].token_uri == devnet.PLACEHOLDER_URI
    assert states[2].revealed and states[2].token_uri == "ipfs://bafkfoo"
    assert isinstance(states[99], ContractRevert) and states[99].name == "ERC721NonexistentToken"


def test_batch_of_many_calls_is_split_and_ordered(chain, accounts):
    for _ in range(3):
        devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=50)
    states = chain.token_states(range(1, 151))
    assert sorted(states) == list(range(1, 151))
    assert all(s.prompt_author == accounts[3] for s in states.values())


def test_mint_logs_decode_every_field(chain, accounts):
    receipt = devnet.mint(chain, minter=accounts[2], prompt_author=accounts[5], quantity=7)
    (log,) = chain.mint_logs(0, chain.block_number())
    assert (log.minter, log.prompt_author, log.start_token_id, log.quantity) == (
        accounts[2],
        accounts[5],
        1,
        7,
    )
    assert log.total_paid_wei == 7 * devnet.MINT_PRICE_WEI
    assert log.tx_hash == receipt["transactionHash"] and log.block_hash == receipt["blockHash"]
    assert log.block_timestamp is not None


@pytest.mark.parametrize(
    ("ids", "uris", "error", "sender_index"),
    [
        ([1], ["a"], AlreadyRevealed, 0),
        ([1], ["a", "b"], LengthMismatch, 0),
        ([2], ["a"], Unauthorized, 7),
    ],
)
def test_reverts_decode_into_typed_exceptions(chain, accounts, ids, uris, error, sender_index):
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    reveal_on_chain(chain, accounts[0], [1], ["ipfs://x"])
    with pytest.raises(error) as excinfo:
        chain.rpc(
            "eth_estimateGas",
            [
                {
                    "from": accounts[sender_index],
                    "to": chain.contract_address,
                    "data": abi.reveal_tokens_calldata(ids, uris),
                }
            ],
        )
    if error is AlreadyRevealed:
        assert excinfo.value.token_id == 1
    if error is Unauthorized:
        assert excinfo.value.args_[1].hex() == abi.KEEPER_ROLE[2:]


def test_decode_revert_handles_strings_panics_and_garbage():
    error_string = "0x08c379a0" + encode(["string"], ["nope"]).hex()
    assert decode_revert(error_string).args_ == ("nope",)
    assert decode_revert("0x4e487b71" + encode(["uint256"], [0x11]).hex()).name == "Panic"
    assert decode_revert("0xdeadbeef").name == "UnknownRevert"
    assert decode_revert("0x").name == "UnknownRevert"
    assert decode_revert("0xa3a57894" + "00").name == "UnknownRevert"  # truncated arguments


def test_chain_id_is_checked_against_network(devnet_info):
    wrong = GliskChain(
        rpc_url=devnet_info.rpc_url, contract_address=devnet_info.contract_address, chain_id=8453
    )
    with pytest.raises(WrongChain, match="chain 31337"):
        wrong.check_chain_id()


def test_unreachable_rpc_is_transient_and_never_shows_the_url():
    url = f"http://127.0.0.1:{devnet.free_port()}/v2/SECRETKEY123"
    chain = GliskChain(rpc_url=url, contract_address="0x" + "11" * 20, chain_id=31337, timeout=0.5)
    with pytest.raises(RpcUnavailable) as excinfo:
        chain.block_number()
    assert excinfo.value.transient
    assert "SECRETKEY123" not in str(excinfo.value) and "127.0.0.1" not in str(excinfo.value)
    assert "SECRETKEY123" not in repr(chain)


def test_timeout_is_enforced():
    import socket
    import time

    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        port = server.getsockname()[1]
        chain = GliskChain(rpc_url=f"http://127.0.0.1:{port}", contract_address="", chain_id=1, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RpcUnavailable, match=r"within 0\.3s"):
            chain.block_number()
        assert time.monotonic() - started < 3
