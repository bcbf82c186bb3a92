"""An RPC that serves another chain: the keeper and the watcher act on nothing and say why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chain.adapter import GliskChain
from chain.models import RevealTransaction
from chain.services.keeper import Keeper, reveal_run
from chain.services.watcher import cursor_key, watcher_run
from glisk.backoffice.selectors import dashboard_get
from glisk.core.state import state_get
from glisk.devtools import devnet
from lifecycle.models import Token
from tests.factories import AuthorFactory, TokenFactory

pytestmark = pytest.mark.django_db


def on_another_chain(chain):
    """The same node, configured as if it were Base mainnet (a mistyped RPC_URL)."""
    return GliskChain(rpc_url=chain._rpc_url, contract_address=chain.contract_address, chain_id=8453)


def test_the_keeper_and_the_watcher_act_on_nothing_on_another_chain(chain, accounts, settings, client):
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=2)
    author = AuthorFactory.create(wallet_address=accounts[3])
    for i in (1, 2):
        TokenFactory.create(
            token_id=i,
            author=author,
            status="ready",
            metadata_cid=f"bafkguard{i}",
            status_changed_at=timezone.now() - timedelta(minutes=5),
        )
    wrong = on_another_chain(chain)
    report = reveal_run(
        keeper=Keeper(chain=wrong, private_key=settings.GLISK.keeper_private_key), budget_seconds=5
    )
    assert report is not None and report.sent == 0 and report.notes == ["wrong chain"]
    assert not RevealTransaction.objects.exists()
    assert set(Token.objects.values_list("status", flat=True)) == {"ready"}
    assert watcher_run(chain=wrong, duration=1, sleep=lambda _: None) == 0
    assert state_get(key=cursor_key(wrong)) is None  # the cursor never followed the other chain

    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert "serves chain 31337, but NETWORK expects chain 8453" in health["problems"][0]
    assert chain._rpc_url not in str(health)
    assert any("serves chain 31337" in e for e in dashboard_get(with_chain=False).errors)

    # Fixed: the next run works and the problem is gone.
    right = reveal_run(
        keeper=Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key), budget_seconds=10
    )
    assert right is not None and right.sent == 1
    assert set(Token.objects.values_list("status", flat=True)) == {"revealed"}
    assert client.get("/health").json() == {"status": "healthy"}
