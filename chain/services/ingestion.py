"""Mint ingestion: decoded BatchMinted logs → MintEvent rows, and their tokens through lifecycle.

The webhook, the log watcher and recovery all come through here. Every log is processed even
when some are duplicates; new tokens wake the image stage in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from django.db import transaction

from authors.models import Author
from authors.services import authors_ensure
from chain.logs import MintLog
from chain.models import MintEvent, WebhookDelivery
from glisk.core.bulk import insert_from_arrays_returning
from lifecycle.services.minting import MintedBatch, tokens_register_minted

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    mint_events_new: int = 0
    mint_events_duplicate: int = 0
    tokens_new: int = 0
    tokens_existing: int = 0
    authors_new: int = 0
    tokens_disputed: int = 0
    new_token_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        # Shallow: `asdict` deep-copied the ids of every new token, twice per delivery, for a
        # summary that keeps only their range (about 0.1 ms per call for 50 ids).
        data: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "new_token_ids"
        }
        ids = self.new_token_ids
        data["new_token_range"] = [min(ids), max(ids)] if ids else None
        return data


def mint_logs_ingest(
    *,
    logs: Sequence[MintLog],
    chain_id: int,
    source: str,
    delivery: WebhookDelivery | None = None,
) -> IngestResult:
    """Insert mint events and register their tokens; duplicates are counted, never an error.

    Runs in one transaction (the caller's, if any). Unknown prompt authors are created with no
    prompt. When any token is new, the image stage is nudged inside the same transaction.
    """
    result = IngestResult()
    if not logs:
        return result
    # Chain order: of two logs that name one token, the earlier makes it (see tokens_register_minted).
    ordered = sorted(logs, key=lambda log: (log.block_number, log.log_index, log.tx_hash))
    batches: list[MintedBatch] = []
    # Inside a caller's transaction no savepoint: nothing here is caught and retried, so a
    # failure rolls back the caller's whole transaction (the webhook's delivery outcome with it).
    with transaction.atomic(savepoint=False):
        authors, result.authors_new = authors_ensure(wallets={log.prompt_author for log in ordered})
        events = _mint_events_store(ordered, chain_id, source, delivery, authors, result)
        for log in ordered:
            author_id = authors[log.prompt_author.lower()].pk
            # The log's own content, not the stored event's: a log that contradicts what is
            # stored disputes those tokens, and the chain settles it (chain.services.disputes).
            batches.append(
                MintedBatch(
                    mint_event_id=events[(log.tx_hash, log.log_index)],
                    author_id=author_id,
                    token_ids=range(log.start_token_id, log.start_token_id + log.quantity),
                    tx_hash=log.tx_hash,
                    author_wallet=log.prompt_author,
                )
            )
        registered = tokens_register_minted(batches=batches, actor=source)
    result.new_token_ids = registered.new_token_ids
    result.tokens_new = len(registered.new_token_ids)
    result.tokens_existing = registered.existing
    result.tokens_disputed = len(registered.disputed)
    if registered.disputed:
        logger.warning(
            "mint.contradicts_stored_tokens",
            extra={
                "source": source,
                "token_ids": registered.disputed[:20],
                "count": len(registered.disputed),
            },
        )
    logger.info("mint.ingested", extra={"source": source, **result.as_dict()})
    return result


def _mint_events_store(
    ordered: Sequence[MintLog],
    chain_id: int,
    source: str,
    delivery: WebhookDelivery | None,
    authors: dict[str, Author],
    result: IngestResult,
) -> dict[tuple[str, int], int]:
    """Insert the events of `ordered` that are not stored yet, in one statement, and return every
    log's event id. A log stored before (or twice in `ordered`: the first is the new one) counts as
    a duplicate and may fill in the block fields its stored copy lacks.

    Writers of the same log are serialized by the unique index: an insert that meets another
    transaction's uncommitted copy waits for it to end, then skips it (that copy committed) or
    inserts (it rolled back), so the counts are exact. Every writer inserts in the order of that
    index's key, (tx hash, log index), not in block order: a reorg can put the same two logs in
    two blocks in the other order, and two writers would then wait for each other.
    """
    by_key = sorted(ordered, key=lambda log: (log.tx_hash, log.log_index))  # stable: the first copy first
    inserted = insert_from_arrays_returning(
        MintEvent,
        each={
            "tx_hash": [log.tx_hash for log in by_key],
            "log_index": [log.log_index for log in by_key],
            "block_number": [log.block_number for log in by_key],
            "block_hash": [log.block_hash for log in by_key],
            "block_timestamp": [log.block_timestamp for log in by_key],
            "minter": [log.minter for log in by_key],
            "prompt_author": [log.prompt_author for log in by_key],
            "author_id": [authors[log.prompt_author.lower()].pk for log in by_key],
            "start_token_id": [log.start_token_id for log in by_key],
            "quantity": [log.quantity for log in by_key],
            "total_paid_wei": [log.total_paid_wei for log in by_key],
        },
        same={"chain_id": chain_id, "source": source, "delivery": delivery},
        skip_existing=True,
        returning=("tx_hash", "log_index"),
    )
    new = {(tx_hash, log_index): pk for pk, tx_hash, log_index in inserted}
    events: dict[tuple[str, int], int] = {}
    duplicates: list[MintLog] = []  # in key order, like the insert
    for log in by_key:
        key = (log.tx_hash, log.log_index)
        if key in new and key not in events:
            events[key] = new[key]
            result.mint_events_new += 1
        else:
            duplicates.append(log)
            result.mint_events_duplicate += 1
    if duplicates:  # one read for all of them
        stored = {
            (event.tx_hash, event.log_index): event
            for event in MintEvent.objects.filter(
                chain_id=chain_id,
                tx_hash__in={log.tx_hash for log in duplicates},
                log_index__in={log.log_index for log in duplicates},
            )
        }
        for log in duplicates:
            event = stored[(log.tx_hash, log.log_index)]
            events[(log.tx_hash, log.log_index)] = event.pk
            _fill_block_fields(event, log, authors[log.prompt_author.lower()].pk, source)
    return events


def _fill_block_fields(event: MintEvent, log: MintLog, author_id: int, source: str) -> None:
    """A delivery that omitted the block's hash or time stored the event without them; a later
    source that has them (the watcher reads them from the chain) fills them in."""
    if log.block_number != event.block_number:
        # Another block for the same log: a reorg moved it (the transaction was mined again, and
        # may have minted other ids). The watcher reads with confirmations, so its copy replaces
        # the stored one; at the head, the operator sees it in the log.
        logger.warning(
            "mint.block_mismatch",
            extra={
                "tx_hash": log.tx_hash,
                "stored_block": event.block_number,
                "seen_block": log.block_number,
                "replaced": source == MintEvent.Source.WATCHER,
            },
        )
        if source == MintEvent.Source.WATCHER:
            MintEvent.objects.filter(pk=event.pk).update(
                block_number=log.block_number,
                block_hash=log.block_hash,
                block_timestamp=log.block_timestamp,
                minter=log.minter,
                prompt_author=log.prompt_author,
                author_id=author_id,
                start_token_id=log.start_token_id,
                quantity=log.quantity,
                total_paid_wei=log.total_paid_wei,
            )
        return
    # Each field only where the row still lacks it and still has this block: the read above took
    # no lock, and the watcher may have replaced the row with another block's copy meanwhile
    # (the UPDATE checks its condition again once it has the row).
    same_block = MintEvent.objects.filter(pk=event.pk, block_number=log.block_number)
    if not event.block_hash and log.block_hash:
        same_block.filter(block_hash="").update(block_hash=log.block_hash)
    if event.block_timestamp is None and log.block_timestamp is not None:
        same_block.filter(block_timestamp=None).update(block_timestamp=log.block_timestamp)
