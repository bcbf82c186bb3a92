from __future__ import annotations

import dataclasses
import json

import pytest
from django.core.management import call_command

from glisk.devtools import devnet
from lifecycle.models import Token, TokenTransition
from lifecycle.services.reveals import cid_from_uri
from tests.chain.helpers import reveal_on_chain
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db

CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def run(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("recover_tokens", "--json", *args, stdout=out, stderr=err)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("{")]
    return exit_info.value.code, json.loads(lines[-1]) if lines else None, err.getvalue()


@pytest.fixture
def minted(chain, accounts):
    """10 tokens on chain: 1-4 by author A, 5-10 by author B; 2 and 3 revealed."""
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=4)
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[4], quantity=6)
    reveal_on_chain(chain, accounts[0], [2, 3], [f"ipfs://{CID}", "https://example.org/3.json"])
    return accounts


def test_recover_fills_gaps_including_already_revealed_tokens(minted):
    TokenFactory.create(token_id=1)
    TokenFactory.create(token_id=7)
    code, summary, _ = run()
    assert code == 0
    assert summary["on_chain"] == 10 and summary["in_database"] == 2 and summary["missing"] == 8
    assert summary["recovered"] == 8 and summary["recovered_revealed"] == 2 and summary["remaining"] == 0
    tokens = {t.token_id: t for t in Token.objects.select_related("author")}
    assert sorted(tokens) == list(range(1, 11))
    assert tokens[2].status == "revealed" and tokens[2].metadata_cid == CID
    assert tokens[3].status == "revealed" and tokens[3].metadata_cid == ""
    assert tokens[4].status == "detected" and tokens[4].author.wallet_address == minted[3]
    assert tokens[9].author.wallet_address == minted[4]
    assert TokenTransition.objects.filter(token_id=4, actor="recovery", to_status="detected").exists()
    history = {t.token_id: t for t in TokenTransition.objects.filter(actor="recovery")}
    assert sorted(history) == [2, 3, 4, 5, 6, 8, 9, 10]  # one row per recovered token, none for 1 and 7
    assert history[2].to_status == "revealed" and history[2].detail == {"token_uri": f"ipfs://{CID}"}
    assert history[3].reason.endswith("(already revealed)") and history[4].detail is None
    assert tokens[2].revealed_at is not None and tokens[4].revealed_at is None
    # Nothing left: a second run is a no-op with exit 0.
    code, summary, _ = run()
    assert code == 0 and summary["missing"] == 0 and summary["recovered"] == 0


def test_recover_respects_limit_and_exits_2_while_some_remain(minted):
    code, summary, _ = run("--limit", "3")
    assert code == 2
    assert summary["recovered"] == 3 and summary["remaining"] == 7
    assert sorted(Token.objects.values_list("token_id", flat=True)) == [1, 2, 3]


def test_dry_run_writes_nothing_and_reports_what_it_would_do(minted):
    code, summary, _ = run("--dry-run")
    assert code == 2
    assert summary["dry_run"] and summary["recovered"] == 10 and summary["recovered_revealed"] == 2
    assert summary["remaining"] == 10
    assert not Token.objects.exists()


def test_recover_nudges_the_image_stage_for_detected_tokens(minted):
    from django_q.models import OrmQ

    run()
    assert OrmQ.objects.count() == 1


def test_recover_exits_1_when_the_chain_is_unreachable(chain, settings):
    settings.GLISK = dataclasses.replace(
        settings.GLISK, rpc_url=f"http://127.0.0.1:{devnet.free_port()}", rpc_timeout_seconds=0.5
    )
    code, summary, err = run()
    assert code == 1 and summary is None
    assert "unreachable" in err and "127.0.0.1" not in err


def test_recover_refuses_the_wrong_chain(chain, settings):
    settings.GLISK = dataclasses.replace(settings.GLISK, chain_id=84532)
    code, _, err = run()
    assert code == 1 and "chain 31337" in err


def test_cid_from_uri():
    assert cid_from_uri(f"ipfs://{CID}") == CID
    assert cid_from_uri(f"ipfs://{CID}/meta.json") == CID
    assert cid_from_uri("https://x/y") == ""


def test_a_token_ingested_meanwhile_is_kept_and_gets_no_recovery_history(minted):
    """Between recovery's read of the chain and its insert, the webhook stored token 5: the
    multi-row insert skips it, and only the tokens recovery inserted get its history row."""
    from authors.services import authors_ensure
    from lifecycle.services.minting import FoundOnChain, tokens_register_recovered

    author = authors_ensure(wallets=[minted[4]])[0][minted[4].lower()]
    ingested = TokenFactory.create(token_id=5, author=author, status="generating")
    found = [
        FoundOnChain(token_id=i, author_id=author.pk, revealed=False, metadata_cid="", token_uri="")
        for i in (5, 6, 7)
    ]
    result = tokens_register_recovered(found=found)
    assert (result.created, result.already_present) == (2, 1)
    ingested.refresh_from_db()
    assert ingested.status == "generating"  # untouched
    assert list(
        TokenTransition.objects.filter(actor="recovery")
        .order_by("token_id")
        .values_list("token_id", flat=True)
    ) == [6, 7]
