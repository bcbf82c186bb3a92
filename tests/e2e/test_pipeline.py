"""End to end with real processes: anvil, gunicorn, the relay and two qclusters."""

from __future__ import annotations

import time

import pytest

from glisk.backoffice.audit import pipeline_audit
from glisk.devtools import devnet
from glisk.devtools.stack import mint_many, mint_plan, wait_until
from lifecycle.models import Token

pytestmark = pytest.mark.slow
TOKENS = 500


def all_revealed(total):
    return Token.objects.filter(status="revealed").count() == total


def mint(stack, total):
    chain = stack.chain()
    accounts = devnet.dev_accounts(chain)
    mint_many(chain, mint_plan(total), authors=accounts[10:16], collectors=accounts[2:10])
    assert chain.next_token_id() == total + 1
    return chain


def audit(stack, chain, total):
    result = pipeline_audit(chain=chain, gateway_url=stack.web_url)
    assert result.problems == []
    assert (result.on_chain, result.revealed, result.failed) == (total, total, 0)
    assert result.checked_content == total


def test_500_tokens_two_clusters_every_token_revealed_exactly_once(stack):
    stack.start_web()
    stack.start_relay()
    stack.start_cluster("cluster-1")
    stack.start_cluster("cluster-2")
    chain = mint(stack, TOKENS)
    assert wait_until(lambda: all_revealed(TOKENS), timeout=300), list(
        Token.objects.exclude(status="revealed").values_list("token_id", "status", "last_error")[:10]
    )
    audit(stack, chain, TOKENS)


def test_500_tokens_with_a_cluster_killed_twice_midway(stack):
    stack.start_web()
    stack.start_relay()
    victim = stack.start_cluster("cluster-1")
    stack.start_cluster("cluster-2")
    chain = mint(stack, TOKENS)
    for round_ in range(2):
        assert wait_until(
            lambda r=round_: Token.objects.filter(status="revealed").count() >= TOKENS * (r + 1) // 4,
            timeout=240,
        )
        stack.kill(victim)  # SIGKILL to the cluster and its workers
        time.sleep(1)
        victim = stack.start_cluster(f"cluster-1-restart-{round_}")
    assert wait_until(lambda: all_revealed(TOKENS), timeout=300), list(
        Token.objects.exclude(status="revealed").values_list("token_id", "status", "last_error")[:10]
    )
    audit(stack, chain, TOKENS)
