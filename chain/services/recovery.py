"""`recover_tokens`: create the tokens the chain has and the database lacks.

Missing ids come from `nextTokenId()`; each one's author, reveal flag and URI come from batched
view calls. Already-revealed tokens are stored as `revealed` with their metadata CID; the others
as `detected`, and the image stage is nudged. Each chunk commits on its own and each token in a
savepoint, so one bad id never undoes the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.db import transaction

from authors.services import authors_ensure
from chain.adapter import GliskChain, TokenOnChain
from chain.errors import ChainError
from lifecycle.selectors import token_ids_present
from lifecycle.services.minting import FoundOnChain, tokens_register_recovered
from lifecycle.services.reveals import cid_from_uri

logger = logging.getLogger(__name__)

CHUNK = 200


@dataclass
class RecoverySummary:
    on_chain: int = 0
    in_database: int = 0
    missing: int = 0
    recovered: int = 0
    recovered_revealed: int = 0
    already_present: int = 0
    errors: int = 0
    remaining: int = 0
    dry_run: bool = False
    error_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _missing_ids(present: set[int], on_chain: int) -> list[int]:
    return [i for i in range(1, on_chain + 1) if i not in present]


def tokens_recover(
    *,
    chain: GliskChain,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RecoverySummary:
    """Fill the gaps between the chain and the database (see the module docstring)."""
    summary = RecoverySummary(dry_run=dry_run)
    summary.on_chain = chain.next_token_id() - 1
    present = token_ids_present(up_to=summary.on_chain)
    missing = _missing_ids(present, summary.on_chain)
    summary.missing = len(missing)
    summary.in_database = len(present)
    todo = missing if limit is None else missing[:limit]
    done = 0
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        states = chain.token_states(chunk)
        good: list[TokenOnChain] = []
        for token_id in chunk:
            state = states[token_id]
            if isinstance(state, ChainError):
                summary.errors += 1
                if len(summary.error_samples) < 5:
                    summary.error_samples.append(f"#{token_id}: {state}")
            else:
                good.append(state)
        if dry_run:
            summary.recovered += len(good)
            summary.recovered_revealed += sum(1 for s in good if s.revealed)
        else:
            _store(good, summary)
        done += len(chunk)
        if progress is not None:
            progress(done, len(todo))
    summary.remaining = summary.missing - (0 if dry_run else summary.recovered + summary.already_present)
    logger.info(
        "recovery.finished", extra={k: v for k, v in summary.as_dict().items() if k != "error_samples"}
    )
    return summary


def _store(states: list[TokenOnChain], summary: RecoverySummary) -> None:
    if not states:
        return
    with transaction.atomic():
        authors, _ = authors_ensure(wallets={s.prompt_author for s in states})
        recovered = tokens_register_recovered(
            found=[
                FoundOnChain(
                    token_id=s.token_id,
                    author_id=authors[s.prompt_author.lower()].pk,
                    revealed=s.revealed,
                    metadata_cid=cid_from_uri(s.token_uri),
                    token_uri=s.token_uri,
                )
                for s in states
            ]
        )
    summary.recovered += recovered.created
    summary.recovered_revealed += recovered.created_revealed
    summary.already_present += recovered.already_present
