"""The keeper: batched `revealTokens` transactions, exactly once per token.

* One sender per contract across every cluster and every keeper key: a PostgreSQL advisory lock
  keyed by the chain and the contract (during a key rotation two keys may hold KEEPER_ROLE; they
  still take turns, and neither sends a token the other has in flight).
* At most one reveal transaction in flight per key; it is resolved (confirmed, rebroadcast,
  replaced) before that key sends anything new, so a crash at any point is healed by the next
  run. Another key's transaction (a rotation) is confirmed or rebroadcast from its stored bytes,
  and released if the node refuses them past the timeout; its tokens stay bound to it meanwhile.
* Sign → store (`signed`, with nonce and raw bytes) and bind the batch's tokens to it in the same
  transaction → broadcast → `sent`. Binding re-checks every token under its row lock and refuses
  if any changed since it was read (an operator's action, another sender): then nothing is
  stored and nothing is broadcast. The stored bytes are what a rebroadcast sends, so a token can
  never end up in two transactions.
* Before signing, one batched call checks `isRevealed` and `tokenPromptAuthor` for every token:
  nothing that would revert with `AlreadyRevealed` is sent.

Tokens are lifecycle's: the keeper reads them through selectors and changes them only through
lifecycle's reveal services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_account import Account
from hexbytes import HexBytes

from chain import abi
from chain.adapter import GliskChain
from chain.errors import AlreadyRevealed, ChainError, ContractRevert, RpcError, RpcThrottled, WrongChain
from chain.models import RevealTransaction
from chain.services.fees import Fees, fees_current, fees_replacing
from chain.services.guard import ChainGuard
from glisk.core.state import advisory_lock, state_get, state_set
from lifecycle.selectors import RevealCandidate, reveal_queue, reveal_waiting_exists
from lifecycle.services.minting import token_mint_dispute
from lifecycle.services.reveals import (
    BatchChanged,
    cid_from_uri,
    reveal_batch_assign,
    reveal_batch_confirm,
    reveal_batch_reassign,
    reveal_batch_release,
    reveal_postpone,
    token_sync_revealed,
)
from lifecycle.services.tokens import InvalidStateTransition, token_fail

logger = logging.getLogger(__name__)

KEEPER_FUNDS_KEY = "keeper.funds"
TYPICAL_REVEAL_GAS = 50 * 100_000  # a full batch of 50, before any reveal was confirmed

ACTOR = "stage:reveal"


@dataclass
class KeeperReport:
    sent: int = 0
    confirmed: int = 0
    tokens_revealed: int = 0
    synced_without_tx: int = 0
    failed_tokens: int = 0
    disputed_tokens: int = 0
    rebroadcast: int = 0
    replaced: int = 0
    batches_changed: int = 0
    notes: list[str] = field(default_factory=list)


def _fees_of(row: RevealTransaction) -> Fees:
    return Fees(
        max_fee_per_gas=int(row.max_fee_per_gas_wei),
        max_priority_fee_per_gas=int(row.max_priority_fee_per_gas_wei),
    )


class Keeper:
    def __init__(self, *, chain: GliskChain, private_key: str):
        if not private_key:
            raise ChainError("KEEPER_PRIVATE_KEY is not set")
        self.chain = chain
        self._account = Account.from_key(private_key)  # the key stays inside the account object
        self.address = self._account.address
        self.config = settings.GLISK
        self.funds_failed_at: datetime | None = None  # the last funds check that failed (record_funds)
        self.due_in: float | None = None  # seconds until the waiting batch is due (due_batch)

    @classmethod
    def from_settings(cls) -> Keeper:
        return cls(chain=GliskChain.from_settings(), private_key=settings.GLISK.keeper_private_key)

    @property
    def lock_name(self) -> str:
        """One sender per contract, whichever key it signs with."""
        return f"keeper:{self.chain.chain_id}:{self.chain.contract_address.lower()}"

    def record_funds(self, *, every: timedelta = timedelta(seconds=60)) -> None:
        """Keep the keeper's balance and what a reveal costs now in SystemState (for /metrics and
        its low-balance alert), at most once per `every`: a scrape never waits on the RPC."""
        previous = state_get(key=KEEPER_FUNDS_KEY)
        if isinstance(previous, dict) and timezone.now() - datetime.fromisoformat(previous["at"]) < every:
            return
        if self.funds_failed_at is not None and timezone.now() - self.funds_failed_at < every:
            return
        balance = self.chain.balance(self.address)
        recent = [
            int(gas)
            for gas in RevealTransaction.objects.filter(status=RevealTransaction.Status.CONFIRMED)
            .order_by("-pk")
            .values_list("gas_used", flat=True)[:20]
            if gas
        ]
        gas = sum(recent) // len(recent) if recent else TYPICAL_REVEAL_GAS
        cost = gas * self.fees().max_fee_per_gas
        state_set(
            key=KEEPER_FUNDS_KEY,
            value={
                "at": timezone.now().isoformat(),
                "address": self.address,
                "balance_wei": str(balance),
                "reveal_cost_wei": str(cost),
                "reveals_affordable": balance // cost if cost else 0,
            },
        )

    def record_funds_safely(self) -> None:
        """`record_funds`, whose failure (the RPC, a fee above REVEAL_MAX_FEE_GWEI) never keeps the
        keeper from its step: receipts of what is in flight must still be read. A failed check
        waits its minute like a good one."""
        try:
            self.record_funds()
        except ChainError as exc:
            logger.warning("keeper.funds_unknown", extra={"error": str(exc)[:200]})
            self.funds_failed_at = timezone.now()

    def fees(self) -> Fees:
        return fees_current(
            chain=self.chain,
            strategy=self.config.keeper_gas_strategy,
            cap_gwei=self.config.reveal_max_fee_gwei,
        )

    # --- building and sending --------------------------------------------------------------
    def _sign(self, *, nonce: int, data: str, gas: int, fees: Fees) -> tuple[bytes, str]:
        signed = self._account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain.chain_id,
                "nonce": nonce,
                "to": self.chain.contract_address,
                "value": 0,
                "data": data,
                "gas": gas,
                "maxFeePerGas": fees.max_fee_per_gas,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            }
        )
        return bytes(signed.raw_transaction), HexBytes(signed.hash).to_0x_hex()

    def sign_and_store(self, batch: list[RevealCandidate]) -> RevealTransaction:
        """Estimate, sign and store a reveal of `batch` (status `signed`) with its tokens bound to it.

        Raises `BatchChanged` (and stores nothing) if a token changed since the batch was read.
        Nothing is broadcast here.
        """
        ids = [t.token_id for t in batch]
        uris = [f"ipfs://{t.metadata_cid}" for t in batch]
        data = abi.reveal_tokens_calldata(ids, uris)
        gas = int(
            Decimal(self.chain.estimate_gas(sender=self.address, data=data)) * self.config.reveal_gas_buffer
        )
        fees = self.fees()
        nonce = self.chain.transaction_count(self.address, "pending")
        raw, tx_hash = self._sign(nonce=nonce, data=data, gas=gas, fees=fees)
        with transaction.atomic():
            row = RevealTransaction.objects.create(
                chain_id=self.chain.chain_id,
                keeper_address=self.address,
                nonce=nonce,
                token_ids=ids,
                token_uris=uris,
                raw_tx=raw,
                tx_hash=tx_hash,
                max_fee_per_gas_wei=fees.max_fee_per_gas,
                max_priority_fee_per_gas_wei=fees.max_priority_fee_per_gas,
                gas_limit=gas,
            )
            reveal_batch_assign(
                tokens={t.token_id: t.metadata_cid for t in batch}, reveal_transaction_id=row.pk
            )
        logger.info(
            "reveal.signed", extra={"tx_hash": tx_hash, "nonce": nonce, "tokens": len(ids), "gas": gas}
        )
        return row

    def broadcast(self, row: RevealTransaction) -> None:
        """Send the stored bytes; `sent` once the node has them (or already had them)."""
        self.chain.send_raw_transaction(bytes(row.raw_tx), tx_hash=row.tx_hash)
        RevealTransaction.objects.filter(pk=row.pk, status__in=RevealTransaction.ACTIVE).update(
            status=RevealTransaction.Status.SENT, sent_at=timezone.now()
        )
        logger.info("reveal.sent", extra={"tx_hash": row.tx_hash, "nonce": row.nonce})

    # --- resolving what is in flight -------------------------------------------------------
    def in_flight(self) -> RevealTransaction | None:
        """This key's unresolved reveal (one at a time: its nonces must not collide)."""
        return (
            RevealTransaction.objects.filter(
                chain_id=self.chain.chain_id, keeper_address=self.address, status__in=RevealTransaction.ACTIVE
            )
            .order_by("nonce", "created_at")
            .first()
        )

    def others_in_flight(self) -> list[RevealTransaction]:
        """Unresolved reveals of other keys (a key rotation): their tokens stay bound to them."""
        return list(
            RevealTransaction.objects.filter(
                chain_id=self.chain.chain_id, status__in=RevealTransaction.ACTIVE
            )
            .exclude(keeper_address=self.address)
            .order_by("created_at")
        )

    def resolve_other(self, row: RevealTransaction, report: KeeperReport) -> None:
        """Move another key's transaction forward as far as bytes alone allow: record its receipt,
        send its stored bytes again, and release its tokens when the node refuses the bytes and
        does not have them past TRANSACTION_TIMEOUT_SECONDS (only its own key could replace them)."""
        if self._mined_member(row, report):
            return
        if self.chain.transaction(row.tx_hash) is not None:
            return  # in the pool: it will be mined, or its key will replace it
        if self.chain.transaction_count(row.keeper_address, "latest") > row.nonce:
            self._abandon(row, "its nonce was used by another transaction of its keeper", report)
            return
        try:
            self.broadcast(row)
            report.rebroadcast += 1
        except RpcError as exc:
            sent_at = row.sent_at or row.created_at
            if timezone.now() - sent_at > timedelta(seconds=self.config.transaction_timeout_seconds):
                self._abandon(
                    row,
                    f"the node refuses its bytes ({exc.rpc_message[:120]}) and only key "
                    f"{row.keeper_address} could replace them",
                    report,
                )

    def _mined_member(self, row: RevealTransaction, report: KeeperReport) -> bool | None:
        """If `row` or one it replaced has a receipt, handle it (see `_mined`); else None."""
        family = [row]
        while family[-1].replaces_id is not None:
            family.append(RevealTransaction.objects.get(pk=family[-1].replaces_id))
        receipts = self.chain.receipts([r.tx_hash for r in family])
        for member, receipt in zip(family, receipts, strict=True):
            if receipt is not None:
                return self._mined(row, member, receipt, report)
        return None

    def resolve(self, row: RevealTransaction, report: KeeperReport) -> bool:
        """Move this key's in-flight transaction forward. Returns True when nothing is in flight."""
        mined = self._mined_member(row, report)
        if mined is not None:
            return mined
        if self.chain.transaction(row.tx_hash) is None:
            if self.chain.transaction_count(row.keeper_address, "latest") > row.nonce:
                self._abandon(row, "its nonce was used by another transaction of its keeper", report)
                return True
            # Dropped from the mempool (or never broadcast before a crash): the same bytes again;
            # if the node refuses them now (fees below today's base fee), the same nonce with
            # today's fees.
            try:
                self.broadcast(row)
            except RpcError as exc:
                logger.warning(
                    "reveal.rebroadcast_refused", extra={"tx_hash": row.tx_hash, "error": str(exc)}
                )
                self.replace(row)
                report.replaced += 1
                return False
            report.rebroadcast += 1
            logger.warning("reveal.rebroadcast", extra={"tx_hash": row.tx_hash, "nonce": row.nonce})
            return False
        if row.status == RevealTransaction.Status.SIGNED:
            self.broadcast(row)
            return False
        sent_at = row.sent_at or row.created_at
        if timezone.now() - sent_at > timedelta(seconds=self.config.transaction_timeout_seconds):
            self.replace(row)
            report.replaced += 1
        return False

    def replace(self, row: RevealTransaction) -> RevealTransaction:
        """Same nonce and calldata, fees bumped past the node's replacement threshold."""
        fees = fees_replacing(
            stuck=_fees_of(row), current=self.fees(), cap_gwei=self.config.reveal_max_fee_gwei
        )
        data = abi.reveal_tokens_calldata(list(row.token_ids), list(row.token_uris))
        raw, tx_hash = self._sign(nonce=row.nonce, data=data, gas=row.gas_limit, fees=fees)
        with transaction.atomic():
            RevealTransaction.objects.filter(pk=row.pk).update(
                status=RevealTransaction.Status.REPLACED, error="stuck past TRANSACTION_TIMEOUT_SECONDS"
            )
            new = RevealTransaction.objects.create(
                chain_id=row.chain_id,
                keeper_address=row.keeper_address,
                nonce=row.nonce,
                token_ids=row.token_ids,
                token_uris=row.token_uris,
                raw_tx=raw,
                tx_hash=tx_hash,
                max_fee_per_gas_wei=fees.max_fee_per_gas,
                max_priority_fee_per_gas_wei=fees.max_priority_fee_per_gas,
                gas_limit=row.gas_limit,
                replaces=row,
            )
            reveal_batch_reassign(from_transaction_id=row.pk, to_transaction_id=new.pk)
        logger.warning(
            "reveal.replaced", extra={"old_tx": row.tx_hash, "new_tx": tx_hash, "nonce": row.nonce}
        )
        self.broadcast(new)
        return new

    def _mined(
        self, row: RevealTransaction, mined: RevealTransaction, receipt: dict[str, Any], report: KeeperReport
    ) -> bool:
        block = int(receipt["blockNumber"], 16)
        succeeded = int(receipt["status"], 16) == 1
        if succeeded and self.chain.block_number() - block + 1 < self.config.reveal_confirmations:
            return False
        outcome = {
            "gas_used": int(receipt["gasUsed"], 16),
            "effective_gas_price_wei": int(receipt.get("effectiveGasPrice", "0x0"), 16),
            "block_number": block,
        }
        with transaction.atomic():
            if mined.pk != row.pk:
                RevealTransaction.objects.filter(pk=row.pk).update(
                    status=RevealTransaction.Status.REPLACED, error=f"superseded: {mined.tx_hash} was mined"
                )
            if not succeeded:
                RevealTransaction.objects.filter(pk=mined.pk).update(
                    status=RevealTransaction.Status.FAILED, error="reverted on chain", **outcome
                )
                report.failed_tokens += reveal_batch_release(
                    reveal_transaction_id=row.pk,
                    reason=f"reveal transaction {mined.tx_hash} reverted",
                    max_attempts=self.config.reveal_max_attempts,
                )
                return True
            RevealTransaction.objects.filter(pk=mined.pk).update(
                status=RevealTransaction.Status.CONFIRMED, confirmed_at=timezone.now(), **outcome
            )
            confirmation = reveal_batch_confirm(
                tokens=dict(zip(mined.token_ids, (cid_from_uri(u) for u in mined.token_uris), strict=True)),
                reveal_transaction_id=mined.pk,
                tx_hash=mined.tx_hash,
                block=block,
            )
        report.tokens_revealed += confirmation.revealed + len(confirmation.repaired)
        report.confirmed += 1
        logger.info(
            "reveal.confirmed",
            extra={
                "tx_hash": mined.tx_hash,
                "block": block,
                "gas_used": outcome["gas_used"],
                "tokens": len(mined.token_ids),
            },
        )
        return True

    def _abandon(self, row: RevealTransaction, why: str, report: KeeperReport) -> None:
        with transaction.atomic():
            RevealTransaction.objects.filter(pk=row.pk).update(
                status=RevealTransaction.Status.FAILED, error=why
            )
            report.failed_tokens += reveal_batch_release(
                reveal_transaction_id=row.pk,
                reason=f"reveal transaction {row.tx_hash} abandoned: {why}",
                max_attempts=self.config.reveal_max_attempts,
            )

    # --- choosing and checking a batch -----------------------------------------------------
    def due_batch(self, *, force: bool = False) -> list[RevealCandidate]:
        """The next batch, if it is full or its oldest token has waited long enough."""
        limit = self.config.batch_reveal_max_tokens
        self.due_in = None
        batch = reveal_queue(limit=limit)
        if batch and batch[0].reveal_requested_at is not None:
            # An operator asked for "reveal now": those tokens go at once, and only those.
            return [t for t in batch if t.reveal_requested_at is not None]
        if not batch or len(batch) >= limit or force:
            return batch
        waited = (timezone.now() - batch[0].ready_since).total_seconds()
        if waited >= self.config.batch_reveal_wait_seconds:
            return batch
        self.due_in = self.config.batch_reveal_wait_seconds - waited
        return []

    def precheck(self, batch: list[RevealCandidate], report: KeeperReport) -> list[RevealCandidate]:
        """Drop tokens already revealed (synced), not on chain (failed) or whose chain author differs
        (disputed: the watcher settles them)."""
        states = self.chain.token_states([t.token_id for t in batch])
        failures = [
            s for s in states.values() if isinstance(s, ChainError) and not isinstance(s, ContractRevert)
        ]
        throttled = next((s for s in failures if isinstance(s, RpcThrottled)), None)
        if throttled is not None:
            raise throttled  # the account's budget, not a token's: the step waits, nothing counts
        if failures and len(failures) == len(states):
            raise failures[0]  # the node, not the tokens: the whole step backs off
        sendable: list[RevealCandidate] = []
        for token in batch:
            state = states[token.token_id]
            try:
                if isinstance(state, ContractRevert):
                    token_fail(
                        token_id=token.token_id,
                        actor=ACTOR,
                        reason=f"not on chain ({state.name}); reorged away?",
                        detail={"revert": state.name},
                    )
                    report.failed_tokens += 1
                elif isinstance(state, ChainError):
                    # This token's own view calls fail: it waits, the others go.
                    failed = reveal_postpone(
                        token_id=token.token_id,
                        reason=f"its on-chain state could not be read: {state}",
                        max_attempts=self.config.reveal_max_attempts,
                    )
                    report.failed_tokens += int(failed)
                elif state.revealed:
                    token_sync_revealed(token_id=token.token_id, token_uri=state.token_uri)
                    report.synced_without_tx += 1
                elif state.prompt_author.lower() != token.author_wallet.lower():
                    # The chain names another author (a reorg the webhook saw first): not sent;
                    # the watcher re-reads the chain with confirmations and restarts the token.
                    report.disputed_tokens += int(
                        token_mint_dispute(
                            token_id=token.token_id,
                            actor=ACTOR,
                            reason=f"author mismatch: chain says {state.prompt_author}, database "
                            f"says {token.author_wallet}; the watcher settles it once confirmed",
                        )
                    )
                else:
                    sendable.append(token)
            except InvalidStateTransition:
                continue  # moved since the batch was read (an operator's action): not ours now
        return sendable

    # --- one pass --------------------------------------------------------------------------
    def step(self, report: KeeperReport, *, force: bool = False) -> str:
        """Resolve what is in flight, else send the next due batch. Returns what happened."""
        for other in self.others_in_flight():
            self.resolve_other(other, report)
        row = self.in_flight()
        if row is not None:
            return "resolved" if self.resolve(row, report) else "waiting"
        batch = self.due_batch(force=force)
        if not batch:
            return "idle"
        sendable = self.precheck(batch, report)
        if not sendable:
            return "synced"
        try:
            row = self.sign_and_store(sendable)
        except AlreadyRevealed as exc:
            # Revealed between the pre-check and the estimate (another sender, by hand): sync it.
            state = self.chain.token_states([exc.token_id])[exc.token_id]
            if isinstance(state, ChainError):
                raise state from None
            token_sync_revealed(token_id=exc.token_id, token_uri=state.token_uri)
            return "synced"
        except BatchChanged as exc:
            report.batches_changed += 1
            logger.warning("reveal.batch_changed", extra={"changed": exc.changed})
            return "changed"
        self.broadcast(row)
        report.sent += 1
        return "sent"


RECEIPT_FIRST_POLL_SECONDS = 0.01


def reveal_run(
    *,
    keeper: Keeper | None = None,
    budget_seconds: float = 60.0,
    poll_seconds: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    force: bool = False,
) -> KeeperReport | None:
    """Be the contract's one sender for up to `budget_seconds`; None if another process is.

    Waits for a batch to fill (or its oldest token to wait BATCH_REVEAL_WAIT_SECONDS) and for
    receipts by polling, holding no row lock meanwhile.
    """
    keeper = keeper or Keeper.from_settings()
    report = KeeperReport()
    with advisory_lock(keeper.lock_name) as got:
        if not got:
            return None
        deadline = time.monotonic() + budget_seconds
        backoff = poll_seconds
        # A receipt is polled for soon after sending, then less often (10 ms, ×1.5 up to the poll
        # interval): a chain that mines at once (a devnet) confirms within milliseconds, and a
        # 0.25 s first poll was half of every batch's cycle there; on a 2 s chain it adds about
        # six receipt reads per transaction.
        receipt_wait = RECEIPT_FIRST_POLL_SECONDS
        guard = ChainGuard(chain=keeper.chain, actor="keeper")
        while time.monotonic() < deadline:
            try:
                # Before every step: an RPC swapped for another chain mid-run sends and
                # resolves nothing (the log, dashboard and /health say why).
                if not guard.check():
                    if "wrong chain" not in report.notes:
                        report.notes.append("wrong chain")
                    if guard.should_stop():
                        break  # and free the lock for a cluster whose RPC is right
                    sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                keeper.record_funds_safely()
                outcome = keeper.step(report, force=force)
                backoff = poll_seconds
            except WrongChain as exc:
                guard.wrong(exc)
                if "wrong chain" not in report.notes:
                    report.notes.append("wrong chain")
                if guard.should_stop():
                    break
                sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except RpcThrottled as exc:
                # The account's compute units, not the node: wait what was named (or the
                # budget's turn), without growing the backoff an outage gets.
                wait = min(30.0, max(0.5, exc.retry_after or 1.0))
                logger.info("reveal.throttled", extra={"retry_in": round(wait, 2)})
                sleep(wait)
                continue
            except ChainError as exc:
                logger.warning("reveal.chain_error", extra={"error": str(exc), "retry_in": backoff})
                report.notes.append(str(exc)[:200])
                sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except InvalidStateTransition:
                continue
            if outcome in ("sent", "resolved", "synced", "changed"):
                receipt_wait = RECEIPT_FIRST_POLL_SECONDS
                continue
            if outcome == "waiting":
                sleep(min(poll_seconds, receipt_wait))
                receipt_wait *= 1.5
                continue
            if outcome == "idle" and not reveal_waiting_exists():
                break
            # A batch waiting to fill goes out when it is due, not up to a poll later.
            due_in = keeper.due_in if outcome == "idle" else None
            sleep(poll_seconds if due_in is None else min(poll_seconds, max(0.01, due_in)))
    return report
