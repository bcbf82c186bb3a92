"""Check the pipeline's invariants against the chain and the served IPFS content.

Used by the demo before it exits and by the end-to-end and chaos tests: every minted token is
revealed (or failed with a reason), revealed in exactly one confirmed transaction, with
`tokenURI` = `ipfs://<metadata cid>` and the chain's prompt author, metadata that names the image
CID, image bytes that hash to it, and no generation or pin done twice: at most one successful
generation each time the token entered `generating` (an operator's regenerate or retry, a mint
correction start a new one) and at most one pin of each kind each time it entered `uploading`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from django.db.models import Count, F

from chain.adapter import GliskChain
from chain.errors import ChainError
from chain.models import RevealTransaction
from lifecycle.models import AttemptOutcome, ImageJob, IpfsRecord, Token, TokenStatus, TokenTransition
from lifecycle.providers.ipfs import cid_matches
from lifecycle.services.minting import REVEALED_WITH_EARLIER_AUTHOR


@dataclass
class AuditResult:
    on_chain: int = 0
    revealed: int = 0
    failed: int = 0
    unfinished: int = 0
    checked_content: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


def pipeline_audit(
    *,
    chain: GliskChain,
    gateway_url: str | None = None,
    require_done: bool = True,
    content_sample: int | None = None,
) -> AuditResult:
    """Audit every token the contract has minted. `gateway_url` enables the content checks."""
    result = AuditResult()
    result.on_chain = chain.next_token_id() - 1
    tokens = {t.pk: t for t in Token.objects.filter(token_id__lte=result.on_chain).select_related("author")}
    for token_id in range(1, result.on_chain + 1):
        token = tokens.get(token_id)
        if token is None:
            result.problem(f"#{token_id} is on chain but not in the database")
        elif token.status == TokenStatus.REVEALED:
            result.revealed += 1
        elif token.status == TokenStatus.FAILED:
            result.failed += 1
            if not token.last_error:
                result.problem(f"#{token_id} failed without a reason")
        else:
            result.unfinished += 1
            if require_done:
                result.problem(f"#{token_id} is still {token.status}")

    confirmed = Counter[int]()
    for row in RevealTransaction.objects.filter(status=RevealTransaction.Status.CONFIRMED):
        confirmed.update(row.token_ids)
    for token_id, times in confirmed.items():
        if times > 1:
            result.problem(f"#{token_id} is in {times} confirmed reveal transactions")
    reverted = RevealTransaction.objects.filter(
        status=RevealTransaction.Status.FAILED, error__contains="reverted"
    )
    for row in reverted[:5]:
        result.problem(f"reveal transaction {row.tx_hash} reverted")

    revealed = [t for t in tokens.values() if t.status == TokenStatus.REVEALED]
    for token in revealed:
        if token.reveal_transaction_id is not None and confirmed[token.pk] != 1:
            result.problem(f"#{token.pk} is revealed but in {confirmed[token.pk]} confirmed transactions")

    try:
        states = chain.token_states([t.pk for t in revealed])
    except ChainError as exc:
        result.problem(f"could not read tokenURI from the chain: {exc}")
        states = {}
    for token in revealed:
        state = states.get(token.pk)
        if isinstance(state, ChainError) or state is None:
            continue
        if not state.revealed or state.token_uri != f"ipfs://{token.metadata_cid}":
            result.problem(
                f"#{token.pk} tokenURI on chain is {state.token_uri!r}, database has {token.metadata_cid}"
            )
        if state.prompt_author.lower() != token.author.wallet_address.lower():
            result.problem(
                f"#{token.pk} is revealed with author {token.author.wallet_address}, the chain says "
                f"{state.prompt_author}"
            )

    # Revealed, then the chain's mint named another author (a reorg deeper than the reveal): the
    # image shows the earlier author's prompt for good.
    for token_id in (
        TokenTransition.objects.filter(reason__contains=REVEALED_WITH_EARLIER_AUTHOR)
        .values_list("token_id", flat=True)
        .distinct()
    ):
        result.problem(f"#{token_id} was revealed with an earlier author's prompt (its mint changed after)")

    stints = _entries()
    generated = (
        ImageJob.objects.filter(outcome=AttemptOutcome.SUCCEEDED)
        .exclude(token__status=TokenStatus.FAILED)
        .values_list("token_id")
        .annotate(n=Count("id"))
    )
    for token_id, n in generated:
        if n > max(1, stints[(token_id, TokenStatus.GENERATING)]):
            result.problem(f"#{token_id} had its image generated {n} times")
    pinned = (
        IpfsRecord.objects.filter(outcome=AttemptOutcome.SUCCEEDED)
        .values_list("token_id", "kind")
        .annotate(n=Count("id"))
    )
    for token_id, kind, n in pinned:
        if n > max(1, stints[(token_id, TokenStatus.UPLOADING)]):
            result.problem(f"#{token_id} had its {kind} pinned {n} times")

    if gateway_url:
        sample = revealed if content_sample is None else revealed[:content_sample]
        session = requests.Session()
        for token in sample:
            problem = _check_content(session, gateway_url, token)
            if problem:
                result.problem(problem)
            result.checked_content += 1
    return result


def _entries() -> Counter[tuple[int, str]]:
    """How many times each token entered `generating` and `uploading`."""
    rows = (
        TokenTransition.objects.filter(to_status__in=[TokenStatus.GENERATING, TokenStatus.UPLOADING])
        .exclude(from_status=F("to_status"))
        .values_list("token_id", "to_status")
        .annotate(n=Count("id"))
    )
    return Counter({(token_id, status): n for token_id, status, n in rows})


def _check_content(session: requests.Session, gateway_url: str, token: Token) -> str | None:
    try:
        meta_response = session.get(f"{gateway_url}/ipfs/{token.metadata_cid}", timeout=10)
        if meta_response.status_code != 200:
            return f"#{token.pk} metadata {token.metadata_cid} is not served ({meta_response.status_code})"
        if not cid_matches(meta_response.content, token.metadata_cid):
            return f"#{token.pk} metadata bytes do not hash to {token.metadata_cid}"
        metadata: dict[str, Any] = meta_response.json()
        image_uri = str(metadata.get("image", ""))
        if image_uri != f"ipfs://{token.image_cid}":
            return f"#{token.pk} metadata names image {image_uri!r}, expected ipfs://{token.image_cid}"
        image_response = session.get(f"{gateway_url}/ipfs/{token.image_cid}", timeout=10)
        if image_response.status_code != 200 or not cid_matches(image_response.content, token.image_cid):
            return f"#{token.pk} image bytes do not hash to {token.image_cid}"
    except (requests.RequestException, ValueError) as exc:
        return f"#{token.pk} content check failed: {type(exc).__name__}"
    return None


def stage_work_by_machine() -> dict[str, Counter[str]]:
    """How many tokens each machine carried through each stage, from the history: a stage's
    hand-on names its worker (`machine:pid:suffix`). Shows whether the work spread over several
    machines or containers."""
    work: dict[str, Counter[str]] = {}
    rows = TokenTransition.objects.filter(actor__startswith="stage:", detail__has_key="worker").values_list(
        "actor", "detail__worker"
    )
    for actor, worker in rows.iterator(chunk_size=5000):
        machine = str(worker).rsplit(":", 2)[0]
        work.setdefault(machine, Counter())[actor.removeprefix("stage:")] += 1
    return work
