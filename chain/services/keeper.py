"""The keeper: batched `revealTokens` transactions from one address, exactly once per token.

* One sender per keeper address across every cluster: a PostgreSQL advisory lock.
* At most one reveal transaction in flight; it is resolved (confirmed, rebroadcast, replaced)
  before anything new is sent, so a crash at any point is healed by the next run.
* Sign → store (`signed`, with nonce and raw bytes) → broadcast → `sent`. The stored bytes are
  what a rebroadcast sends, so a token can never end up in two transactions.
* Before signing, one batched call checks `isRevealed` and `tokenPromptAuthor` for every token:
  nothing that would revert with `AlreadyRevealed` is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from eth_abi import encode as abi_encode
from eth_account import Account
from hexbytes import HexBytes

from chain import abi
from chain.adapter import AlreadyRevealed, ChainError, ContractRevert, GliskChain, TokenOnChain
from chain.models import RevealTransaction
from chain.services.state import advisory_lock
from lifecycle.models import Token, TokenStatus
from lifecycle.services.tokens import (
    LeaseLost,
    token_fail,
    token_transition,
    tokens_transition,
)

logger = logging.getLogger(__name__)

ACTOR = "stage:reveal"
GWEI = 10**9
PERCENTILES = {"slow": 10, "medium": 50, "fast": 90}
MIN_PRIORITY_FEE_WEI = 1_000_000  # 0.001 gwei: Base's tips are tiny, but never zero
REPLACEMENT_BUMP = Decimal("1.25")  # nodes want >= +10% on both fees to accept a replacement


class FeesAboveCap(ChainError):
    transient = True


@dataclass
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclass
class KeeperReport:
    sent: int = 0
    confirmed: int = 0
    tokens_revealed: int = 0
    synced_without_tx: int = 0
    failed_tokens: int = 0
    rebroadcast: int = 0
    replaced: int = 0
    notes: list[str] = field(default_factory=list)


class Keeper:
    def __init__(self, *, chain: GliskChain, private_key: str):
        if not private_key:
            raise ChainError("KEEPER_PRIVATE_KEY is not set")
        self.chain = chain
        self._account = Account.from_key(private_key)  # the key stays inside the account object
        self.address = self._account.address
        self.config = settings.GLISK

    @classmethod
    def from_settings(cls) -> Keeper:
        return cls(chain=GliskChain.from_settings(), private_key=settings.GLISK.keeper_private_key)

    @property
    def lock_name(self) -> str:
        return f"keeper:{self.chain.chain_id}:{self.address.lower()}"

    # --- fees ------------------------------------------------------------------------------
    def fees(self) -> Fees:
        """EIP-1559 fees from `eth_feeHistory` at the strategy's percentile, capped if configured."""
        percentile = PERCENTILES[self.config.keeper_gas_strategy]
        history = self.chain.rpc("eth_feeHistory", [hex(10), "latest", [percentile]])
        base_fees = [int(x, 16) for x in history.get("baseFeePerGas") or ["0x0"]]
        rewards = sorted(int(r[0], 16) for r in history.get("reward") or [] if r)
        tip = max(MIN_PRIORITY_FEE_WEI, rewards[len(rewards) // 2] if rewards else 0)
        next_base = base_fees[-1]
        max_fee = 2 * next_base + tip
        cap = self.config.reveal_max_fee_gwei
        if cap is not None:
            cap_wei = int(cap * GWEI)
            if cap_wei < next_base + tip:
                raise FeesAboveCap(
                    f"base fee {next_base / GWEI:.4f} gwei + tip exceeds REVEAL_MAX_FEE_GWEI={cap}"
                )
            max_fee = min(max_fee, cap_wei)
        return Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=min(tip, max_fee))

    # --- building and sending --------------------------------------------------------------
    def calldata(self, token_ids: list[int], uris: list[str]) -> str:
        sel = abi.selector({"name": "revealTokens", "inputs": [{"type": "uint256[]"}, {"type": "string[]"}]})
        return sel + abi_encode(["uint256[]", "string[]"], [token_ids, uris]).hex()

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

    def sign_and_store(self, tokens: list[Token]) -> RevealTransaction:
        """Estimate, sign and store a reveal of `tokens` (status `signed`); nothing is broadcast."""
        ids = [t.pk for t in tokens]
        uris = [f"ipfs://{t.metadata_cid}" for t in tokens]
        data = self.calldata(ids, uris)
        estimate = int(
            self.chain.rpc(
                "eth_estimateGas", [{"from": self.address, "to": self.chain.contract_address, "data": data}]
            ),
            16,
        )
        gas = int(Decimal(estimate) * self.config.reveal_gas_buffer)
        fees = self.fees()
        nonce = int(self.chain.rpc("eth_getTransactionCount", [self.address, "pending"]), 16)
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
            Token.objects.filter(pk__in=ids).update(reveal_transaction=row, updated_at=timezone.now())
        logger.info(
            "reveal.signed", extra={"tx_hash": tx_hash, "nonce": nonce, "tokens": len(ids), "gas": gas}
        )
        return row

    def broadcast(self, row: RevealTransaction) -> None:
        """Send the stored bytes; `sent` once the node has them (or already had them)."""
        try:
            self.chain.rpc("eth_sendRawTransaction", [HexBytes(bytes(row.raw_tx)).to_0x_hex()])
        except ChainError as exc:
            text = str(exc).lower()
            if "already known" not in text and "known transaction" not in text:
                raise
        RevealTransaction.objects.filter(pk=row.pk, status__in=RevealTransaction.ACTIVE).update(
            status=RevealTransaction.Status.SENT, sent_at=timezone.now()
        )
        logger.info("reveal.sent", extra={"tx_hash": row.tx_hash, "nonce": row.nonce})

    # --- resolving what is in flight -------------------------------------------------------
    def in_flight(self) -> RevealTransaction | None:
        return (
            RevealTransaction.objects.filter(
                chain_id=self.chain.chain_id, keeper_address=self.address, status__in=RevealTransaction.ACTIVE
            )
            .order_by("nonce", "created_at")
            .first()
        )

    def resolve(self, row: RevealTransaction, report: KeeperReport) -> bool:
        """Move an in-flight transaction forward. Returns True when nothing is in flight any more."""
        # The row or one it replaced may be the one that was mined.
        family = [row]
        while family[-1].replaces_id is not None:
            family.append(RevealTransaction.objects.get(pk=family[-1].replaces_id))
        receipts = self.chain.rpc_batch([("eth_getTransactionReceipt", [r.tx_hash]) for r in family])
        for member, receipt in zip(family, receipts, strict=True):
            if isinstance(receipt, ChainError):
                raise receipt
            if receipt:
                return self._mined(row, member, receipt, report)
        known = self.chain.rpc("eth_getTransactionByHash", [row.tx_hash])
        if known is None:
            mined_nonce = int(self.chain.rpc("eth_getTransactionCount", [self.address, "latest"]), 16)
            if mined_nonce > row.nonce:
                self._abandon(row, "its nonce was used by another transaction of this keeper", report)
                return True
            # Dropped from the mempool (or never broadcast before a crash): the same bytes again.
            self.broadcast(row)
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
        fees = self.fees()
        bumped = Fees(
            max_fee_per_gas=max(
                fees.max_fee_per_gas, int(Decimal(int(row.max_fee_per_gas_wei)) * REPLACEMENT_BUMP) + 1
            ),
            max_priority_fee_per_gas=max(
                fees.max_priority_fee_per_gas,
                int(Decimal(int(row.max_priority_fee_per_gas_wei)) * REPLACEMENT_BUMP) + 1,
            ),
        )
        cap = self.config.reveal_max_fee_gwei
        if cap is not None and bumped.max_fee_per_gas > int(cap * GWEI):
            raise FeesAboveCap("replacing the stuck reveal would exceed REVEAL_MAX_FEE_GWEI")
        data = self.calldata(list(row.token_ids), list(row.token_uris))
        raw, tx_hash = self._sign(nonce=row.nonce, data=data, gas=row.gas_limit, fees=bumped)
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
                max_fee_per_gas_wei=bumped.max_fee_per_gas,
                max_priority_fee_per_gas_wei=bumped.max_priority_fee_per_gas,
                gas_limit=row.gas_limit,
                replaces=row,
            )
            Token.objects.filter(pk__in=row.token_ids).update(reveal_transaction=new)
        logger.warning(
            "reveal.replaced", extra={"old_tx": row.tx_hash, "new_tx": tx_hash, "nonce": row.nonce}
        )
        self.broadcast(new)
        return new

    def _mined(
        self, row: RevealTransaction, mined: RevealTransaction, receipt: dict[str, Any], report: KeeperReport
    ) -> bool:
        block = int(receipt["blockNumber"], 16)
        confirmations = self.chain.block_number() - block + 1
        if int(receipt["status"], 16) == 1 and confirmations < self.config.reveal_confirmations:
            return False
        gas_used = int(receipt["gasUsed"], 16)
        price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        now = timezone.now()
        with transaction.atomic():
            if mined.pk != row.pk:
                RevealTransaction.objects.filter(pk=row.pk).update(
                    status=RevealTransaction.Status.REPLACED, error=f"superseded: {mined.tx_hash} was mined"
                )
            if int(receipt["status"], 16) != 1:
                RevealTransaction.objects.filter(pk=mined.pk).update(
                    status=RevealTransaction.Status.FAILED,
                    gas_used=gas_used,
                    effective_gas_price_wei=price,
                    block_number=block,
                    error="reverted on chain",
                )
                self._release_tokens(mined, f"reveal transaction {mined.tx_hash} reverted", report)
                return True
            RevealTransaction.objects.filter(pk=mined.pk).update(
                status=RevealTransaction.Status.CONFIRMED,
                gas_used=gas_used,
                effective_gas_price_wei=price,
                block_number=block,
                confirmed_at=now,
            )
            not_ready = tokens_transition(
                token_ids=mined.token_ids,
                to=TokenStatus.REVEALED,
                actor=ACTOR,
                reason=f"revealed in {mined.tx_hash}",
                sources=[TokenStatus.READY],
                fields={"reveal_transaction_id": mined.pk, "revealed_at": now},
                detail={"tx_hash": mined.tx_hash, "block": block},
            )
            report.tokens_revealed += len(mined.token_ids) - len(not_ready)
            for token_id, status in not_ready.items():
                # Revealed on chain whatever the database says; an operator must look at it.
                logger.error(
                    "reveal.token_not_ready",
                    extra={"token_id": token_id, "status": status, "tx_hash": mined.tx_hash},
                )
        report.confirmed += 1
        logger.info(
            "reveal.confirmed",
            extra={
                "tx_hash": mined.tx_hash,
                "block": block,
                "gas_used": gas_used,
                "tokens": len(mined.token_ids),
            },
        )
        return True

    def _abandon(self, row: RevealTransaction, why: str, report: KeeperReport) -> None:
        with transaction.atomic():
            RevealTransaction.objects.filter(pk=row.pk).update(
                status=RevealTransaction.Status.FAILED, error=why
            )
            self._release_tokens(row, f"reveal transaction {row.tx_hash} abandoned: {why}", report)

    def _release_tokens(self, row: RevealTransaction, reason: str, report: KeeperReport) -> None:
        """Tokens of a transaction that did not reveal them go back to the queue, or fail at the cap."""
        for token in Token.objects.filter(pk__in=row.token_ids, status=TokenStatus.READY):
            attempts = token.reveal_attempts + 1
            if attempts >= self.config.reveal_max_attempts:
                token_fail(
                    token_id=token.pk,
                    actor=ACTOR,
                    reason=reason,
                    detail={"tx_hash": row.tx_hash},
                    fields={"reveal_attempts": attempts, "reveal_transaction": None},
                )
                report.failed_tokens += 1
            else:
                Token.objects.filter(pk=token.pk).update(
                    reveal_attempts=attempts,
                    reveal_transaction=None,
                    last_error=reason[:500],
                    next_attempt_at=timezone.now() + timedelta(seconds=min(60, 2**attempts)),
                )

    # --- choosing and checking a batch -----------------------------------------------------
    def due_tokens(self, *, force: bool = False) -> list[Token]:
        """The next batch, if it is full or its oldest token has waited long enough."""
        now = timezone.now()
        queue = Token.objects.filter(
            status=TokenStatus.READY, next_attempt_at__lte=now, reveal_transaction=None
        )
        batch = list(
            queue.select_related("author").order_by(
                F("reveal_requested_at").asc(nulls_last=True), "status_changed_at", "token_id"
            )[: self.config.batch_reveal_max_tokens]
        )
        if not batch:
            return []
        if len(batch) >= self.config.batch_reveal_max_tokens or force:
            return batch
        if batch[0].reveal_requested_at is not None:
            return batch  # an operator asked for "reveal now": no batch wait
        waited = (now - batch[0].status_changed_at).total_seconds()
        return batch if waited >= self.config.batch_reveal_wait_seconds else []

    def precheck(self, tokens: list[Token], report: KeeperReport) -> list[Token]:
        """Drop tokens already revealed (synced) or whose chain author differs (failed)."""
        states = self.chain.token_states([t.pk for t in tokens])
        sendable: list[Token] = []
        for token in tokens:
            state = states[token.pk]
            if isinstance(state, ContractRevert):
                token_fail(
                    token_id=token.pk,
                    actor=ACTOR,
                    reason=f"not on chain ({state.name}); reorged away?",
                    detail={"revert": state.name},
                )
                report.failed_tokens += 1
            elif isinstance(state, ChainError):
                raise state
            elif state.revealed:
                self._sync_revealed(token, state)
                report.synced_without_tx += 1
            elif state.prompt_author.lower() != token.author.wallet_address.lower():
                token_fail(
                    token_id=token.pk,
                    actor=ACTOR,
                    reason=f"author mismatch: chain says {state.prompt_author}, "
                    f"database says {token.author.wallet_address} (reorg or bug)",
                    detail={"chain_author": state.prompt_author},
                )
                report.failed_tokens += 1
            else:
                sendable.append(token)
        return sendable

    def _sync_revealed(self, token: Token, state: TokenOnChain) -> None:
        from chain.services.recovery import cid_from_uri

        on_chain_cid = cid_from_uri(state.token_uri)
        token_transition(
            token_id=token.pk,
            to=TokenStatus.REVEALED,
            actor=ACTOR,
            reason="already revealed on chain; synced without a transaction",
            sources=[TokenStatus.READY],
            fields={"metadata_cid": on_chain_cid or token.metadata_cid},
            detail={"token_uri": state.token_uri},
        )

    # --- one pass --------------------------------------------------------------------------
    def step(self, report: KeeperReport, *, force: bool = False) -> str:
        """Resolve what is in flight, else send the next due batch. Returns what happened."""
        row = self.in_flight()
        if row is not None:
            return "resolved" if self.resolve(row, report) else "waiting"
        batch = self.due_tokens(force=force)
        if not batch:
            return "idle"
        sendable = self.precheck(batch, report)
        if not sendable:
            return "synced"
        try:
            row = self.sign_and_store(sendable)
        except AlreadyRevealed as exc:
            # Revealed between the pre-check and the estimate (another keeper, by hand): sync and retry.
            token = next(t for t in sendable if t.pk == exc.token_id)
            self._sync_revealed(token, self.chain.token_states([token.pk])[token.pk])  # type: ignore[arg-type]
            return "synced"
        self.broadcast(row)
        report.sent += 1
        return "sent"


def reveal_run(
    *,
    keeper: Keeper | None = None,
    budget_seconds: float = 60.0,
    poll_seconds: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    force: bool = False,
) -> KeeperReport | None:
    """Be the keeper's one sender for up to `budget_seconds`; None if another process is.

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
        while time.monotonic() < deadline:
            try:
                outcome = keeper.step(report, force=force)
                backoff = poll_seconds
            except ChainError as exc:
                logger.warning("reveal.chain_error", extra={"error": str(exc), "retry_in": backoff})
                report.notes.append(str(exc)[:200])
                sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except LeaseLost:
                continue
            if outcome in ("sent", "resolved", "synced"):
                continue
            if outcome == "idle" and not ready_tokens_waiting():
                break
            sleep(poll_seconds)
    return report


def ready_tokens_waiting() -> bool:
    return Token.objects.filter(status=TokenStatus.READY, reveal_transaction=None).exists()
