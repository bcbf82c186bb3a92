"""The audit catches what it promises to: a duplicate generation or pin beyond the token's
stints, and a reveal with an author the chain does not have."""

from __future__ import annotations

import pytest

from authors.services import authors_ensure
from glisk.backoffice.audit import pipeline_audit
from glisk.devtools import devnet
from lifecycle.models import ImageJob, IpfsRecord, Token, TokenTransition
from tests.chain.helpers import reveal_on_chain
from tests.factories import AuthorFactory, TokenFactory

pytestmark = pytest.mark.django_db


def revealed_token(chain, accounts, *, author=None):
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=1)
    author = author or authors_ensure(wallets=[accounts[3]])[0][accounts[3].lower()]
    token = TokenFactory.create(token_id=1, author=author, status="revealed", metadata_cid="bafkaudit")
    reveal_on_chain(chain, accounts[0], [1], ["ipfs://bafkaudit"])
    TokenTransition.objects.create(token=token, from_status="detected", to_status="generating", actor="t")
    TokenTransition.objects.create(token=token, from_status="generating", to_status="uploading", actor="t")
    return token


def job(token, n):
    ImageJob.objects.create(token=token, attempt=n, provider="local", prompt_text="p", outcome="succeeded")


def test_a_clean_token_passes(chain, accounts):
    token = revealed_token(chain, accounts)
    job(token, 1)
    IpfsRecord.objects.create(token=token, kind="image", attempt=1, provider="local", outcome="succeeded")
    assert pipeline_audit(chain=chain).problems == []


def test_a_second_generation_in_one_stint_is_a_problem_but_not_after_a_regenerate(chain, accounts):
    token = revealed_token(chain, accounts)
    job(token, 1)
    job(token, 2)
    assert pipeline_audit(chain=chain).problems == ["#1 had its image generated 2 times"]
    TokenTransition.objects.create(
        token=token, from_status="ready", to_status="generating", actor="operator:x"
    )
    assert pipeline_audit(chain=chain).problems == []


def test_a_second_pin_in_one_stint_is_a_problem(chain, accounts):
    token = revealed_token(chain, accounts)
    for n in (1, 2):
        IpfsRecord.objects.create(
            token=token, kind="metadata", attempt=n, provider="local", outcome="succeeded"
        )
    assert pipeline_audit(chain=chain).problems == ["#1 had its metadata pinned 2 times"]


def test_a_reveal_under_another_author_is_a_problem(chain, accounts):
    revealed_token(chain, accounts, author=AuthorFactory.create())
    (problem,) = pipeline_audit(chain=chain).problems
    assert problem.startswith("#1 is revealed with author") and accounts[3] in problem
    assert Token.objects.count() == 1


def test_content_is_checked_against_cidv0_and_the_older_cidv1_metadata(
    chain, accounts, live_server, settings
):
    """Metadata is pinned as CIDv0 now; a token pinned before keeps its CIDv1 URI, and the audit
    checks each in the version its CID is written in, over HTTP from the app's /ipfs/ gateway."""
    from lifecycle.providers.ipfs import LocalPinner
    from lifecycle.services.stages import metadata_bytes

    store = LocalPinner(settings.IPFS_LOCAL_DIR)
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=3)
    author = authors_ensure(wallets=[accounts[3]])[0][accounts[3].lower()]
    uris = []
    for token_id, version in ((1, 1), (2, 0), (3, 0)):
        image = store.pin(
            data=b"image %d" % token_id,
            filename="i.png",
            content_type="image/png",
            keyvalues={},
            cid_version=1,
        )
        metadata = {"name": f"GLISK S0 #{token_id}", "image": f"ipfs://{image.cid}"}
        pinned = store.pin(
            data=metadata_bytes(metadata),
            filename="m.json",
            content_type="application/json",
            keyvalues={},
            cid_version=version,
        )
        if token_id == 3:  # the store serves other bytes under this CID
            store.path_for(pinned.cid).write_bytes(b'{"tampered":true}')
        TokenFactory.create(
            token_id=token_id,
            author=author,
            status="revealed",
            image_cid=image.cid,
            metadata_cid=pinned.cid,
            metadata=metadata,
        )
        uris.append(f"ipfs://{pinned.cid}")
    assert uris[0].startswith("ipfs://bafkrei") and uris[1].startswith("ipfs://Qm")
    reveal_on_chain(chain, accounts[0], [1, 2, 3], uris)
    result = pipeline_audit(chain=chain, gateway_url=live_server.url)
    assert result.checked_content == 3
    assert [p for p in result.problems if "hash" in p] == [f"#3 metadata bytes do not hash to {uris[2][7:]}"]


def test_a_token_whose_mint_changed_author_after_its_reveal_is_reported(chain, accounts):
    from lifecycle.services.minting import ChainMint, token_mint_dispute, token_mint_settle

    token = revealed_token(chain, accounts)
    job(token, 1)
    other = AuthorFactory.create()
    assert token_mint_dispute(token_id=token.pk, actor="watcher", reason="contradicted by a test")
    outcome = token_mint_settle(
        token_id=token.pk,
        chain_mint=ChainMint(author_id=other.pk, author_wallet=other.wallet_address, mint_event_id=None),
        actor="watcher",
    )
    assert outcome == "corrected"
    problems = pipeline_audit(chain=chain).problems
    assert "#1 was revealed with an earlier author's prompt (its mint changed after)" in problems
