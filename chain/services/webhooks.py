"""Alchemy Custom (GraphQL) webhooks: verify, store raw, parse strictly, ingest idempotently.

Verification happens over the exact bytes received, before anything is parsed. Every delivery
is stored whatever becomes of it, so it can be inspected and replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chain import abi
from chain.logs import MalformedLog, MintLog, decode_batch_minted
from chain.models import MintEvent, WebhookDelivery
from chain.services.ingestion import mint_logs_ingest
from glisk.core.errors import ApplicationError
from glisk.core.state import state_get_for_update, state_set

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Alchemy-Signature"
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_MAX_INT = 2**63 - 1
_STORED_HEADERS_EXCLUDED = {"HTTP_COOKIE", "HTTP_AUTHORIZATION"}


class WebhookRejected(ApplicationError):
    """A delivery we answer with 4xx: it says what was wrong with it."""

    error_type = "malformed_delivery"

    def __init__(self, message: str, *, status_code: int = 400):
        self.status_code = status_code
        super().__init__(message)


def webhook_signature_valid(*, body: bytes, signature: str | None, secret: str) -> bool:
    """HMAC-SHA256 of the raw body with the signing key, compared in constant time."""
    if not signature or not secret:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses a str with non-ASCII characters (a header holding 0xE9),
    # which was a 500 and lost the delivery's trace.
    given = signature.strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected.encode(), given)


REJECTED_BODY_KEPT = 4096  # bytes of an unverified body kept for inspection
REJECTED_HEADERS_KEPT = {
    SIGNATURE_HEADER.lower(),
    "content-type",
    "content-length",
    "user-agent",
    "x-forwarded-for",
    "x-real-ip",
}
REJECTED_HEADER_KEPT = 256  # characters of each


# Of deliveries whose signature did not verify, at most this many are kept an hour (a sample to
# inspect); the others are only counted (UNSTORED_KEY), so their rate costs no storage.
REJECTED_KEPT_PER_HOUR = 100
UNSTORED_KEY = "webhook.deliveries_unstored"


# Refused deliveries not stored are counted in this process and written at most once a second,
# so a flood of them costs no database write per request (nor a lock every worker queues on).
UNSTORED_FLUSH_SECONDS = 1.0
_unstored_lock = threading.Lock()
_unstored_pending: dict[str, int] = {}
_unstored_flushed_at = 0.0


def webhook_rejection_count(*, outcome: str = "rejected_signature") -> None:
    """Count a refused delivery that is not stored (past the hour's sample, or throttled):
    /metrics counts deliveries as stored + pruned + these (at most a second behind)."""
    global _unstored_flushed_at
    with _unstored_lock:
        _unstored_pending[outcome] = _unstored_pending.get(outcome, 0) + 1
        if time.monotonic() - _unstored_flushed_at < UNSTORED_FLUSH_SECONDS:
            return
        pending = dict(_unstored_pending)
        _unstored_pending.clear()
        _unstored_flushed_at = time.monotonic()
    with transaction.atomic():
        counts = dict(state_get_for_update(key=UNSTORED_KEY, default={}) or {})
        for name, n in pending.items():
            counts[name] = int(counts.get(name, 0)) + n
        state_set(key=UNSTORED_KEY, value=counts)


def webhook_delivery_record(
    *, body: bytes, meta: dict[str, Any], verified: bool, error: str = ""
) -> WebhookDelivery | None:
    """Store a delivery (autocommitted, before anything else can fail). A verified one is kept
    whole (it can be replayed) and always stored; of one whose signature did not verify only its
    size, its SHA-256 and its first few KiB are kept, and only REJECTED_KEPT_PER_HOUR of those an
    hour (None: counted, not stored), so that nobody can fill the database through this endpoint."""
    if not verified:
        recent = WebhookDelivery.objects.filter(
            outcome=WebhookDelivery.Outcome.REJECTED_SIGNATURE,
            received_at__gte=timezone.now() - timedelta(hours=1),
        )[:REJECTED_KEPT_PER_HOUR]
        if recent.count() >= REJECTED_KEPT_PER_HOUR:
            webhook_rejection_count()
            return None
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in meta.items()
        if key.startswith("HTTP_") and key not in _STORED_HEADERS_EXCLUDED
    }
    if "CONTENT_TYPE" in meta:
        headers["Content-Type"] = str(meta["CONTENT_TYPE"])
    if not verified:
        # Headers are no smaller a way to fill the table than bodies: a few, each cut short.
        headers = {
            name: value[:REJECTED_HEADER_KEPT]
            for name, value in headers.items()
            if name.lower() in REJECTED_HEADERS_KEPT
        }
    kept = body if verified else body[:REJECTED_BODY_KEPT]
    return WebhookDelivery.objects.create(
        body=kept,
        body_size=len(body),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_truncated=len(kept) < len(body),
        headers=headers,
        signature_valid=verified,
        outcome=WebhookDelivery.Outcome.RECEIVED if verified else WebhookDelivery.Outcome.REJECTED_SIGNATURE,
        error=error[:2000],
        processed_at=None if verified else timezone.now(),
    )


def webhook_delivery_reject(
    *,
    delivery: WebhookDelivery,
    outcome: str,
    error: str,
    signature_valid: bool | None = None,
    ids: tuple[str, str] | None = None,
) -> None:
    fields: dict[str, Any] = {"outcome": outcome, "error": error[:2000], "processed_at": timezone.now()}
    if signature_valid is not None:
        fields["signature_valid"] = signature_valid
    if ids is not None:
        fields["event_id"], fields["webhook_id"] = ids
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)


@dataclass
class ParsedDelivery:
    event_id: str
    webhook_id: str
    capacity_error: str | None = None
    logs: list[MintLog] = field(default_factory=list)
    ignored_logs: int = 0


def _ids_of(body: bytes) -> tuple[str, str]:
    """The event and webhook ids of a (verified but malformed) body, where it has them: the
    delivery's page and search show them."""
    if json_too_deep(body):
        return "", ""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "", ""
    if not isinstance(payload, dict):
        return "", ""
    return _id_text(payload.get("id")), _id_text(payload.get("webhookId"))


def _id_text(value: object) -> str:
    """An id as stored: text or a number, without NUL (PostgreSQL text cannot hold it), 128 at most."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return ""
    return str(value).replace("\x00", "")[:128]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise WebhookRejected(message)


def _int(value: Any, name: str, maximum: int = _MAX_INT) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
    _require(0 <= value <= maximum, f"{name} is out of range")
    return int(value)


def _str(value: Any, name: str, pattern: re.Pattern[str] | None = None) -> str:
    _require(isinstance(value, str), f"{name} must be a string")
    if pattern is not None:
        _require(bool(pattern.match(value)), f"{name} is malformed")
    return str(value)


# Alchemy's payload nests about ten levels. json.loads on a body nested tens of thousands deep
# raises RecursionError, or overflows the C stack where the recursion limit was raised.
MAX_JSON_DEPTH = 64


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` nests arrays and objects more than `limit` deep (strings skipped). Bodies
    with few brackets, every real delivery, are answered by two counts at C speed."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def parse_alchemy_payload(body: bytes, *, contract_address: str, network: str) -> ParsedDelivery:
    """Validate an Alchemy GraphQL delivery and decode our contract's successful BatchMinted logs.

    Raises `WebhookRejected` (400) for anything malformed; nothing is decoded half-way.
    """
    if json_too_deep(body):
        raise WebhookRejected(f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WebhookRejected("body is not valid JSON") from None
    _require(isinstance(payload, dict), "payload must be a JSON object")
    event = payload.get("event")
    _require(isinstance(event, dict), "payload has no event object")
    parsed = ParsedDelivery(
        event_id=_id_text(payload.get("id")), webhook_id=_id_text(payload.get("webhookId"))
    )
    if "error" in event and "data" not in event:
        parsed.capacity_error = str(event["error"])[:1000]
        return parsed
    sent_network = event.get("network")
    if sent_network is not None:
        _require(
            sent_network == network,
            f"delivery is for network {str(sent_network)[:40]!r}, this service runs NETWORK={network}",
        )
    data = event.get("data")
    _require(
        isinstance(data, dict) and isinstance(data.get("block"), dict), "payload has no event.data.block"
    )
    block = data["block"]
    number = _int(block.get("number"), "block.number")
    # `hash` and `timestamp` are in our query, but a query that selects only `number` and the logs
    # is valid too: then they stay empty and the log watcher fills them in from the chain.
    block_hash = _str(block["hash"], "block.hash", _HASH).lower() if block.get("hash") is not None else ""
    block_time = None
    if block.get("timestamp") is not None:
        block_time = datetime.fromtimestamp(
            _int(block["timestamp"], "block.timestamp", maximum=2**40), tz=UTC
        )
    logs = block.get("logs", [])
    _require(isinstance(logs, list), "block.logs must be a list")
    contract = contract_address.lower()

    for n, log in enumerate(logs):
        where = f"block.logs[{n}]"
        _require(isinstance(log, dict), f"{where} must be an object")
        account = log.get("account")
        _require(isinstance(account, dict), f"{where}.account must be an object")
        address = _str(account.get("address"), f"{where}.account.address", _ADDRESS).lower()
        topics = log.get("topics")
        _require(
            isinstance(topics, list) and all(isinstance(t, str) for t in topics),
            f"{where}.topics must be a list of strings",
        )
        if address != contract or not topics or topics[0].lower() != abi.BATCH_MINTED_TOPIC:
            parsed.ignored_logs += 1
            continue
        tx = log.get("transaction")
        _require(isinstance(tx, dict), f"{where}.transaction must be an object")
        tx_hash = _str(tx.get("hash"), f"{where}.transaction.hash", _HASH).lower()
        status = tx.get("status")
        if status != 1:  # reverted (0) or unknown: a failed transaction minted nothing
            parsed.ignored_logs += 1
            continue
        index = _int(log.get("index"), f"{where}.index", maximum=2**31 - 1)
        try:
            minter, author, start, quantity, paid = decode_batch_minted(
                topics, _str(log.get("data"), f"{where}.data")
            )
        except MalformedLog as exc:
            raise WebhookRejected(f"{where}: {exc}") from None
        _require(start + quantity - 1 <= _MAX_INT, f"{where}: token ids out of range")
        parsed.logs.append(
            MintLog(
                minter=minter,
                prompt_author=author,
                start_token_id=start,
                quantity=quantity,
                total_paid_wei=paid,
                tx_hash=tx_hash,
                log_index=index,
                block_number=number,
                block_hash=block_hash,
                block_timestamp=block_time,
            )
        )
    return parsed


def webhook_delivery_process(*, delivery: WebhookDelivery) -> dict[str, Any]:
    """Parse and ingest a verified delivery; returns the summary stored on it.

    Raises `WebhookRejected` after recording the delivery as malformed.
    """
    config = settings.GLISK
    body = bytes(delivery.body)
    try:
        parsed = parse_alchemy_payload(body, contract_address=config.contract_address, network=config.network)
    except WebhookRejected as exc:
        webhook_delivery_reject(
            delivery=delivery, outcome=WebhookDelivery.Outcome.MALFORMED, error=str(exc), ids=_ids_of(body)
        )
        logger.warning("webhook.malformed", extra={"delivery_id": delivery.pk, "error": str(exc)})
        raise
    if parsed.capacity_error is not None:
        summary: dict[str, Any] = {"capacity_error": parsed.capacity_error}
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            outcome=WebhookDelivery.Outcome.CAPACITY_ERROR,
            event_id=parsed.event_id,
            webhook_id=parsed.webhook_id,
            result=summary,
            error=parsed.capacity_error,
            processed_at=timezone.now(),
        )
        logger.warning("webhook.capacity_error", extra={"delivery_id": delivery.pk})
        return summary
    with transaction.atomic():
        result = mint_logs_ingest(
            logs=parsed.logs, chain_id=config.chain_id, source=MintEvent.Source.WEBHOOK, delivery=delivery
        )
        summary = {"mint_logs": len(parsed.logs), "ignored_logs": parsed.ignored_logs, **result.as_dict()}
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            outcome=WebhookDelivery.Outcome.PROCESSED,
            event_id=parsed.event_id,
            webhook_id=parsed.webhook_id,
            result=summary,
            error="",
            processed_at=timezone.now(),
        )
    logger.info(
        "webhook.processed",
        extra={"delivery_id": delivery.pk, "event_id": parsed.event_id, "tokens_new": result.tokens_new},
    )
    return summary


def webhook_delivery_replay(*, delivery_id: int) -> dict[str, Any]:
    """Run a stored delivery through processing again (idempotent), re-checking its signature."""
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    signature = next((v for k, v in delivery.headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    valid = webhook_signature_valid(
        body=bytes(delivery.body), signature=signature, secret=settings.GLISK.alchemy_webhook_secret
    )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        signature_valid=valid, replay_count=delivery.replay_count + 1
    )
    if delivery.body_truncated:
        raise WebhookRejected(
            f"only the first {len(bytes(delivery.body))} of its {delivery.body_size} bytes were kept "
            "(its signature did not verify when it arrived); the log watcher or recover_tokens "
            "ingests its mints from the chain",
            status_code=409,
        )
    if not valid:
        raise WebhookRejected(
            "the stored signature does not verify with the current signing key", status_code=401
        )
    delivery.refresh_from_db()
    return webhook_delivery_process(delivery=delivery)


# How long deliveries are kept, by outcome: junk goes first; processed ones stay long enough to
# replay or audit a month of ingestion (their mint events keep everything the chain said).
RETENTION_DAYS: dict[str, int] = {
    WebhookDelivery.Outcome.REJECTED_SIGNATURE: 7,
    WebhookDelivery.Outcome.MALFORMED: 30,
    WebhookDelivery.Outcome.CAPACITY_ERROR: 30,
    WebhookDelivery.Outcome.PROCESSED: 30,
}


PRUNE_BATCH = 1000


PRUNED_KEY = "webhook.deliveries_pruned"


def webhook_deliveries_prune(
    *, retention_days: dict[str, int] | None = None, dry_run: bool = False, now: datetime | None = None
) -> dict[str, int]:
    """Delete deliveries older than their outcome's retention; returns how many per outcome.

    Deliveries still `received` or `failed` are kept: they may need a replay. Mint events keep
    what they came from as a null link.
    """
    now = now or timezone.now()
    deleted: dict[str, int] = {}
    for outcome, days in (retention_days or RETENTION_DAYS).items():
        old = WebhookDelivery.objects.filter(outcome=outcome, received_at__lt=now - timedelta(days=days))
        if dry_run:
            deleted[outcome] = old.count()
            continue
        deleted[outcome] = 0
        # In batches of ids, never loading bodies or headers (only the primary key is read).
        while ids := list(old.values_list("pk", flat=True)[:PRUNE_BATCH]):
            with transaction.atomic():
                MintEvent.objects.filter(delivery_id__in=ids).update(delivery=None)
                removed, _ = WebhookDelivery.objects.filter(pk__in=ids).only("pk").delete()
                deleted[outcome] += removed
                # /metrics counts deliveries as stored + pruned, so the counter never goes down.
                pruned = dict(state_get_for_update(key=PRUNED_KEY, default={}) or {})
                pruned[outcome] = int(pruned.get(outcome, 0)) + removed
                state_set(key=PRUNED_KEY, value=pruned)
    logger.info("webhook.pruned", extra={"dry_run": dry_run, **deleted})
    return deleted
