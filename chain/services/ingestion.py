"""Mint ingestion: decoded BatchMinted logs → MintEvent and Token rows, idempotently.

The webhook, the log watcher and recovery all come through here. Every log is processed even
when some are duplicates; new tokens wake the image stage in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from authors.services import authors_ensure
from chain.adapter import MintLog
from chain.models import MintEvent, WebhookDelivery
from lifecycle.models import Token, TokenStatus, TokenTransition
from lifecycle.nudge import stage_nudge

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    mint_events_new: int = 0
    mint_events_duplicate: int = 0
    tokens_new: int = 0
    tokens_existing: int = 0
    authors_new: int = 0
    new_token_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        ids = data.pop("new_token_ids")
        data["new_token_range"] = [min(ids), max(ids)] if ids else None
        return data


def mint_logs_ingest(
    *,
    logs: Sequence[MintLog],
    chain_id: int,
    source: str,
    delivery: WebhookDelivery | None = None,
) -> IngestResult:
    """Insert mint events and their tokens; duplicates are counted, never an error.

    Runs in one transaction (the caller's, if any). Unknown prompt authors are created with no
    prompt. When any token is new, the image stage is nudged inside the same transaction.
    """
    result = IngestResult()
    if not logs:
        return result
    # One order for everyone, so two deliveries holding overlapping logs cannot deadlock.
    ordered = sorted(logs, key=lambda log: (log.block_number, log.log_index, log.tx_hash))
    now = timezone.now()
    with transaction.atomic():
        authors, result.authors_new = authors_ensure(wallets={log.prompt_author for log in ordered})
        for log in ordered:
            # Serialize writers of the same log (a webhook retry racing the watcher); the
            # existence checks below are then exact, and the summary counts are true.
            _lock_log(chain_id, log)
            event = MintEvent.objects.filter(
                chain_id=chain_id, tx_hash=log.tx_hash, log_index=log.log_index
            ).first()
            if event is None:
                event = MintEvent.objects.create(
                    chain_id=chain_id,
                    tx_hash=log.tx_hash,
                    log_index=log.log_index,
                    block_number=log.block_number,
                    block_hash=log.block_hash,
                    block_timestamp=log.block_timestamp or timezone.now(),
                    minter=log.minter,
                    prompt_author=log.prompt_author,
                    author=authors[log.prompt_author.lower()],
                    start_token_id=log.start_token_id,
                    quantity=log.quantity,
                    total_paid_wei=log.total_paid_wei,
                    source=source,
                    delivery=delivery,
                )
                result.mint_events_new += 1
            else:
                result.mint_events_duplicate += 1

            ids = range(log.start_token_id, log.start_token_id + log.quantity)
            existing = set(Token.objects.filter(token_id__in=ids).values_list("token_id", flat=True))
            fresh = [
                Token(token_id=i, author=event.author, mint_event=event, status=TokenStatus.DETECTED)
                for i in ids
                if i not in existing
            ]
            # ignore_conflicts: recovery may insert the same id without holding this log's lock.
            Token.objects.bulk_create(fresh, ignore_conflicts=True)
            TokenTransition.objects.bulk_create(
                TokenTransition(
                    token_id=t.token_id,
                    from_status="",
                    to_status=TokenStatus.DETECTED,
                    actor=source,
                    reason=f"minted in {log.tx_hash}",
                    created_at=now,
                )
                for t in fresh
            )
            result.tokens_new += len(fresh)
            result.tokens_existing += len(existing)
            result.new_token_ids.extend(t.token_id for t in fresh)

        if result.tokens_new:
            stage_nudge(stage="image")
    logger.info("mint.ingested", extra={"source": source, **result.as_dict()})
    return result


def _lock_log(chain_id: int, log: MintLog) -> None:
    key = f"mint:{chain_id}:{log.tx_hash}:{log.log_index}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
