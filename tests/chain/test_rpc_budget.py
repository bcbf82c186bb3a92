"""The RPC's compute-unit budget: each request is priced as Alchemy prices it and admitted through
the account's shared budget; a 429 (HTTP or JSON-RPC) is throttling, not a failure."""

from __future__ import annotations

import time

import pytest

from chain.adapter import MULTICALL3, GliskChain
from chain.errors import ChainError, RpcThrottled
from chain.pricing import compute_units
from glisk.core.models import ProviderBudget
from glisk.devtools.standins.rpc import RpcStandIn
from tests.lifecycle.conftest import configure

pytestmark = pytest.mark.django_db


def call(method, params=None):
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}


def test_each_request_is_priced_in_compute_units():
    assert compute_units(call("eth_getLogs")) == 75
    assert compute_units(call("eth_sendRawTransaction")) == 250
    assert compute_units([call("eth_call"), call("eth_call"), call("eth_blockNumber")]) == 62
    assert compute_units(call("eth_someNewMethod")) == 26
    assert compute_units([call("evm_mine"), call("anvil_setBalance"), call("eth_chainId")]) == 0


@pytest.fixture
def front(anvil_url):
    server = RpcStandIn(anvil_url, cu_per_second=10.0).start()  # holds 100 CU
    yield server
    server.stop()


def test_a_429_from_the_endpoint_is_throttling_and_pauses_the_account(front, settings):
    configure(settings, rpc_compute_units_per_second=1000.0, rpc_compute_units_burst=1000.0)
    chain = GliskChain(rpc_url=front.url, contract_address="", chain_id=31337)
    chain.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "0x0"}])  # 75 of the front's 100
    with pytest.raises(RpcThrottled) as raised:
        chain.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "0x0"}])
    assert raised.value.transient and "429" in str(raised.value)
    budget = ProviderBudget.objects.get(name="rpc")
    assert budget.throttled == 1 and budget.paused_until is not None
    assert front.throttled_count == 1 and front.compute_units == 75


def test_our_budget_keeps_the_calls_under_the_endpoints_limit(front, settings):
    """The front allows 10 CU a second with 100 at once; ours is set the same with 50 at once:
    20 calls of 10 CU wait their turns instead of being refused."""
    configure(settings, rpc_compute_units_per_second=10.0, rpc_compute_units_burst=50.0)
    chain = GliskChain(rpc_url=front.url, contract_address="", chain_id=31337)
    started = time.monotonic()
    for _ in range(8):
        chain.block_number()
    assert front.throttled_count == 0 and front.compute_units == 80
    assert time.monotonic() - started >= 2.5  # 30 CU past the burst, at 10 a second


def test_a_json_rpc_error_429_is_throttling(settings):
    configure(settings, rpc_compute_units_per_second=0.0)
    chain = GliskChain(rpc_url="http://127.0.0.1:9", contract_address="", chain_id=31337)
    with pytest.raises(RpcThrottled):
        chain._unwrap({"jsonrpc": "2.0", "id": 1, "error": {"code": 429, "message": "too many"}})
    assert ProviderBudget.objects.count() == 0  # unlimited: no budget row to pause


def test_a_batch_is_never_dearer_than_the_budgets_burst(front, settings):
    """The endpoint refuses any one request dearer than its bucket holds: batches are cut to our
    burst (100 CU here: five eth_getBalance of 19), and every result comes back in order."""
    configure(settings, rpc_compute_units_per_second=1000.0, rpc_compute_units_burst=100.0)
    front.set_rate(1000.0)
    chain = GliskChain(rpc_url=front.url, contract_address="", chain_id=31337)
    results = chain.rpc_batch([("eth_getBalance", [f"0x{n + 1:040x}", "latest"]) for n in range(12)])
    assert results == ["0x0"] * 12
    assert [(r["calls"], r["compute_units"]) for r in front.requests] == [(5, 95), (5, 95), (2, 38)]


def test_the_devnet_has_the_canonical_multicall3_and_puts_it_back(chain):
    """The code Base (and every chain) has at 0xcA11…CA11, by its canonical keyless deployment;
    wagmi batches the web frontend's reads through it. A chain with other code there (an older
    devnet) gets the canonical code; one that has it keeps it."""
    from eth_utils import keccak

    from glisk.devtools import devnet

    canonical = "0xd5c15df687b16f2ff992fc8d767b4216323184a2bbc6ee2f9c398c318e770891"

    def code_hash() -> str:
        return "0x" + keccak(hexstr=chain.rpc("eth_getCode", [MULTICALL3, "latest"])).hex()

    assert code_hash() == canonical
    assert len(chain.rpc("eth_getCode", [MULTICALL3, "latest"])) == 2 + 2 * 3808
    block = chain.block_number()
    devnet.put_multicall3(chain)  # already there: nothing is sent
    assert chain.block_number() == block
    chain.rpc("anvil_setCode", [MULTICALL3, "0x6000"])  # someone else's code
    devnet.put_multicall3(chain)
    assert code_hash() == canonical


def test_token_states_come_from_one_multicall3_read_where_the_chain_has_it(chain, accounts, devnet_info):
    """The devnet has Multicall3 at its canonical address, as Base has: many tokens' state is one
    `eth_call` (26 compute units), and reads exactly what the per-token calls read."""
    from glisk.devtools import devnet

    devnet.mint(chain, minter=accounts[1], prompt_author=accounts[2], quantity=3)
    front = RpcStandIn(devnet_info.rpc_url, cu_per_second=None).start()
    try:
        through = GliskChain(rpc_url=front.url, contract_address=chain.contract_address, chain_id=31337)
        first = chain.next_token_id() - 3
        ids = [first, first + 1, first + 2, first + 999]  # the last does not exist: its calls revert
        states = through.token_states(ids)
        assert through.has_multicall3()
        assert [r["calls"] for r in front.requests] == [1, 1]  # eth_getCode once, then one eth_call
        one_by_one = chain.with_contract(chain.contract_address)
        one_by_one._multicall3 = False  # the JSON-RPC batch path, for comparison
        batched = one_by_one.token_states(ids)
        assert [states[i] for i in ids[:3]] == [batched[i] for i in ids[:3]]
        assert str(states[ids[3]]) == str(batched[ids[3]])  # the same revert, decoded the same
        assert states[first].prompt_author == accounts[2] and not states[first].revealed
        assert isinstance(states[first + 999], ChainError)
    finally:
        front.stop()


@pytest.mark.parametrize("code", [429, -32005])
def test_a_throttled_batch_of_view_calls_costs_the_keeper_nothing(
    chain, accounts, settings, devnet_info, code
):
    """Alchemy answers a batch past the budget with HTTP 200 and an error 429 for each call it no
    longer covers (Infura and QuickNode: -32005, found in review). A token whose state could not
    be read that way is the account's throttling, not the token's: the keeper's whole step waits,
    no token counts a reveal attempt, and the budget pauses once for the answer, not per call."""

    import dataclasses

    from chain.services.keeper import Keeper, KeeperReport
    from lifecycle.models import Token
    from tests.chain.test_keeper import ready_tokens

    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_wait_seconds=0.0, reveal_max_attempts=1)
    configure(settings, rpc_compute_units_per_second=1000.0, rpc_compute_units_burst=1000.0)  # ours: room
    tokens = ready_tokens(chain, accounts, 3)
    front = RpcStandIn(devnet_info.rpc_url, cu_per_second=10.0).start()  # 100 CU: 3 of the 9 calls
    front.partial_batches = True
    front.refusal_code = code
    try:
        through = GliskChain(rpc_url=front.url, contract_address=chain.contract_address, chain_id=31337)
        through._multicall3 = False  # a chain without Multicall3: three eth_calls a token
        keeper = Keeper(chain=through, private_key=settings.GLISK.keeper_private_key)
        with pytest.raises(RpcThrottled):
            keeper.precheck(keeper.due_batch(force=True), KeeperReport())
        assert front.requests[-1]["refused"] == 6
    finally:
        front.stop()
    assert ProviderBudget.objects.get(name="rpc").throttled == 1
    assert set(
        Token.objects.filter(pk__in=[t.pk for t in tokens]).values_list("status", "reveal_attempts")
    ) == {("ready", 0)}


def test_an_endpoint_of_another_account_spends_none_of_the_rpc_budget(front, settings):
    """Farcaster's OP Mainnet endpoint is not the Base account: its calls and 429s leave the RPC
    budget alone."""
    configure(settings, rpc_compute_units_per_second=10.0, rpc_compute_units_burst=10.0)
    other = GliskChain(rpc_url=front.url, contract_address="", chain_id=10, budget=None)
    other.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "0x0"}])  # 75 CU, past our burst of 10
    with pytest.raises(RpcThrottled):
        other.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "0x0"}])
    assert not ProviderBudget.objects.exists()


def test_a_view_call_that_fails_inside_multicall3_without_revert_data_is_not_the_tokens_answer():
    from chain.adapter import _inner_result
    from chain.errors import ContractRevert, RpcUnavailable

    assert _inner_result(True, b"\x01") == "0x01"
    assert isinstance(_inner_result(False, b""), RpcUnavailable)  # out of gas: ask again
    assert isinstance(_inner_result(False, bytes.fromhex("7e273289") + bytes(32)), ContractRevert)
