"""The image and IPFS stages: claim a batch, do the external work outside any transaction,
finish each token with a lease-checked transition, and record every attempt as a row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.utils import timezone

from authors.selectors import author_get_by_wallet
from lifecycle.models import AttemptOutcome, ImageJob, IpfsRecord, Token, TokenStatus
from lifecycle.nudge import stage_nudge
from lifecycle.providers.errors import ContentPolicyViolation, ProviderError
from lifecycle.providers.images import ImageProvider, image_provider
from lifecycle.providers.ipfs import Pinner, cid_v1, pin_verified, pinner
from lifecycle.services.tokens import (
    LeaseLost,
    token_claim,
    token_fail,
    token_lease_release,
    token_transition,
)

logger = logging.getLogger(__name__)

_EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg", "image/gif": "gif"}


def backoff_seconds(attempt: int, *, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter, at least what the provider asked for."""
    c = settings.GLISK
    exponential = min(c.retry_backoff_max_seconds, c.retry_backoff_base_seconds * 2 ** max(0, attempt - 1))
    delay = exponential * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not crypto)
    return max(delay, retry_after or 0.0)


@dataclass
class StageReport:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, other: StageReport) -> None:
        self.claimed += other.claimed
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.failed += other.failed
        self.lost += other.lost


def _error_detail(error: ProviderError, provider: str) -> dict[str, Any]:
    return {
        "provider": provider,
        "error_class": error.error_class,
        "status": error.status,
        "transient": error.transient,
        "retry_after": error.retry_after,
    }


def _retry_or_fail(
    *,
    token: Token,
    worker_id: str,
    actor: str,
    error: ProviderError,
    provider: str,
    attempts_field: str,
    attempts: int,
    max_attempts: int,
    report: StageReport,
) -> None:
    detail = _error_detail(error, provider)
    reason = f"{provider}: {error}"
    if error.transient and attempts < max_attempts:
        delay = backoff_seconds(attempts, retry_after=error.retry_after)
        kept = token_lease_release(
            token_id=token.pk,
            worker_id=worker_id,
            fields={
                attempts_field: attempts,
                "next_attempt_at": timezone.now() + timedelta(seconds=delay),
                "last_error": reason[:500],
                "last_error_detail": detail,
            },
        )
        if kept:
            report.retried += 1
        else:
            report.lost += 1
        logger.warning(
            "stage.retry_scheduled",
            extra={
                "token_id": token.pk,
                "actor": actor,
                "attempt": attempts,
                "error_class": error.error_class,
                "delay": round(delay, 2),
            },
        )
        return
    why = reason if not error.transient else f"{reason} (gave up after {attempts} attempts)"
    try:
        token_fail(
            token_id=token.pk,
            actor=actor,
            reason=why,
            lease_owner=worker_id,
            detail=detail,
            fields={attempts_field: attempts},
        )
        report.failed += 1
    except LeaseLost:
        report.lost += 1
    logger.error(
        "stage.token_failed", extra={"token_id": token.pk, "actor": actor, "error_class": error.error_class}
    )


# --- image stage -------------------------------------------------------------------------------


def prompt_for(token: Token) -> str:
    """The author's prompt, else the default author's, else DEFAULT_PROMPT."""
    if token.author.prompt_text:
        return token.author.prompt_text
    default_author = author_get_by_wallet(wallet=settings.GLISK.default_author_wallet)
    if default_author is not None and default_author.prompt_text:
        return default_author.prompt_text
    return settings.GLISK.default_prompt


@dataclass(frozen=True)
class StoredImage:
    path: str
    content_type: str


def _store_image(token: Token, data: bytes, content_type: str) -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    extension = _EXTENSIONS.get(content_type, "bin")
    return str(default_storage.save(f"images/{token.pk}-{digest}.{extension}", ContentFile(data)))


def _generate_recorded(
    *, token: Token, provider: ImageProvider, prompt: str, attempt: int, fallback: bool
) -> StoredImage:
    """One generation, its bytes stored at once and the attempt recorded with where they are."""
    job = ImageJob.objects.create(
        token=token, attempt=attempt, provider=provider.name, prompt_text=prompt, fallback=fallback
    )
    started = time.monotonic()
    try:
        image = provider.generate(prompt=prompt, token_id=token.pk)
    except ProviderError as exc:
        outcome = (
            AttemptOutcome.CONTENT_POLICY
            if isinstance(exc, ContentPolicyViolation)
            else AttemptOutcome.TRANSIENT_ERROR
            if exc.transient
            else AttemptOutcome.PERMANENT_ERROR
        )
        ImageJob.objects.filter(pk=job.pk).update(
            outcome=outcome,
            error=str(exc)[:2000],
            error_class=exc.error_class,
            external_id=getattr(exc, "external_id", "") or "",
            duration_ms=int((time.monotonic() - started) * 1000),
            finished_at=timezone.now(),
        )
        raise
    path = _store_image(token, image.data, image.content_type)
    ImageJob.objects.filter(pk=job.pk).update(
        outcome=AttemptOutcome.SUCCEEDED,
        external_id=image.external_id[:128],
        image_bytes=len(image.data),
        image_path=path,
        content_type=image.content_type,
        duration_ms=int((time.monotonic() - started) * 1000),
        finished_at=timezone.now(),
    )
    return StoredImage(path=path, content_type=image.content_type)


def _finished_generation(token: Token) -> tuple[StoredImage, ImageJob] | None:
    """A generation that succeeded in this stint in `generating` but was never handed on (its
    worker died between storing the image and the transition): reuse it, do not pay twice."""
    job = (
        ImageJob.objects.filter(
            token=token, outcome=AttemptOutcome.SUCCEEDED, created_at__gte=token.status_changed_at
        )
        .exclude(image_path="")
        .order_by("-created_at")
        .first()
    )
    if job is None or not default_storage.exists(job.image_path):
        return None
    return StoredImage(path=job.image_path, content_type=job.content_type), job


def image_generate_token(
    *, token: Token, worker_id: str, provider: ImageProvider, report: StageReport
) -> None:
    """Generate, download and store one claimed token's image; move it to `uploading`."""
    actor = "stage:image"
    config = settings.GLISK
    if token.status == TokenStatus.DETECTED:
        prompt = prompt_for(token)
        token_transition(
            token_id=token.pk,
            to=TokenStatus.GENERATING,
            actor=actor,
            reason="generation started",
            sources=[TokenStatus.DETECTED],
            lease_owner=worker_id,
            release_lease=False,
            fields={"prompt_text": prompt, "fallback_prompt_used": False},
        )
        token.prompt_text, token.fallback_prompt_used = prompt, False
    attempts = token.image_attempts + 1
    prompt, fallback = token.prompt_text or prompt_for(token), token.fallback_prompt_used
    reused = _finished_generation(token) if token.status == TokenStatus.GENERATING else None
    try:
        if reused is not None:
            image, job = reused
            prompt, fallback, attempts = job.prompt_text, job.fallback, max(job.attempt, token.image_attempts)
            logger.info("stage.image_reused", extra={"token_id": token.pk, "job": job.pk})
        try:
            if reused is None:
                image = _generate_recorded(
                    token=token, provider=provider, prompt=prompt, attempt=attempts, fallback=fallback
                )
        except ContentPolicyViolation:
            if fallback:
                raise
            # One retry with the safe prompt, recorded on the token.
            prompt, fallback = config.fallback_censored_prompt, True
            Token.objects.filter(pk=token.pk, claimed_by=worker_id).update(
                prompt_text=prompt, fallback_prompt_used=True
            )
            image = _generate_recorded(
                token=token, provider=provider, prompt=prompt, attempt=attempts, fallback=True
            )
    except ProviderError as exc:
        error = exc
        if isinstance(exc, ContentPolicyViolation):  # the safe prompt was refused as well
            error = ProviderError(
                f"the fallback prompt was refused too: {exc}", transient=False, error_class="content_policy"
            )
        _retry_or_fail(
            token=token,
            worker_id=worker_id,
            actor=actor,
            error=error,
            provider=provider.name,
            attempts_field="image_attempts",
            attempts=attempts,
            max_attempts=config.image_max_attempts,
            report=report,
        )
        return

    path = image.path
    try:
        with transaction.atomic():
            token_transition(
                token_id=token.pk,
                to=TokenStatus.UPLOADING,
                actor=actor,
                reason="image stored",
                sources=[TokenStatus.GENERATING],
                lease_owner=worker_id,
                fields={
                    "image": path,
                    "image_content_type": image.content_type,
                    "image_attempts": attempts,
                    "prompt_text": prompt,
                    "fallback_prompt_used": fallback,
                    "image_cid": "",
                    "metadata_cid": "",
                    "next_attempt_at": timezone.now(),
                    "last_error": "",
                    "last_error_detail": None,
                },
            )
            stage_nudge(stage="ipfs")
    except LeaseLost:
        report.lost += 1  # another worker owns the token now; it will reuse the stored image
        return
    report.succeeded += 1


# --- IPFS stage --------------------------------------------------------------------------------


def token_metadata(*, token: Token, image_cid: str) -> dict[str, Any]:
    """The ERC-721 metadata (with OpenSea's attributes) for a token."""
    author = token.author
    attributes: list[dict[str, Any]] = [{"trait_type": "Author", "value": author.wallet_address}]
    if author.twitter_handle:
        attributes.append({"trait_type": "Twitter", "value": author.twitter_handle})
    if author.farcaster_handle:
        attributes.append({"trait_type": "Farcaster", "value": author.farcaster_handle})
    metadata: dict[str, Any] = {
        "name": f"GLISK S0 #{token.pk}",
        "description": settings.GLISK.metadata_description,
        "image": f"ipfs://{image_cid}",
        "attributes": attributes,
    }
    if settings.GLISK.metadata_external_url:
        metadata["external_url"] = settings.GLISK.metadata_external_url.replace("{token_id}", str(token.pk))
    return metadata


def metadata_bytes(metadata: dict[str, Any]) -> bytes:
    """Deterministic serialization: the same metadata always has the same CID."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _pin_recorded(
    *, token: Token, pinner_: Pinner, kind: str, attempt: int, data: bytes, filename: str, content_type: str
) -> str:
    expected = cid_v1(data)
    if IpfsRecord.objects.filter(
        token=token,
        kind=kind,
        cid=expected,
        outcome=AttemptOutcome.SUCCEEDED,
        created_at__gte=token.status_changed_at,
    ).exists():
        return expected  # pinned in this stint already (its worker died before handing it on)
    record = IpfsRecord.objects.create(token=token, kind=kind, attempt=attempt, provider=pinner_.name)
    started = time.monotonic()
    try:
        pinned = pin_verified(
            pinner_,
            data=data,
            filename=filename,
            content_type=content_type,
            keyvalues={"token_id": str(token.pk), "kind": kind},
        )
    except ProviderError as exc:
        IpfsRecord.objects.filter(pk=record.pk).update(
            outcome=AttemptOutcome.TRANSIENT_ERROR if exc.transient else AttemptOutcome.PERMANENT_ERROR,
            error=str(exc)[:2000],
            error_class=exc.error_class,
            duration_ms=int((time.monotonic() - started) * 1000),
            finished_at=timezone.now(),
        )
        raise
    IpfsRecord.objects.filter(pk=record.pk).update(
        outcome=AttemptOutcome.SUCCEEDED,
        cid=pinned.cid,
        size_bytes=pinned.size,
        duration_ms=int((time.monotonic() - started) * 1000),
        finished_at=timezone.now(),
    )
    return pinned.cid


def ipfs_pin_token(*, token: Token, worker_id: str, pinner_: Pinner, report: StageReport) -> None:
    """Pin the image (unless already pinned) and the metadata; move the token to `ready`."""
    actor = "stage:ipfs"
    attempts = token.ipfs_attempts + 1
    try:
        image_cid = token.image_cid
        if not image_cid:
            with token.image.open("rb") as handle:
                data = handle.read()
            extension = _EXTENSIONS.get(token.image_content_type, "bin")
            image_cid = _pin_recorded(
                token=token,
                pinner_=pinner_,
                kind=IpfsRecord.Kind.IMAGE,
                attempt=attempts,
                data=data,
                filename=f"glisk-s0-{token.pk}.{extension}",
                content_type=token.image_content_type or "application/octet-stream",
            )
            # Kept at once: a metadata failure must not pin the image again.
            if not Token.objects.filter(pk=token.pk, claimed_by=worker_id).update(image_cid=image_cid):
                report.lost += 1
                return
        metadata = token_metadata(token=token, image_cid=image_cid)
        metadata_cid = _pin_recorded(
            token=token,
            pinner_=pinner_,
            kind=IpfsRecord.Kind.METADATA,
            attempt=attempts,
            data=metadata_bytes(metadata),
            filename=f"glisk-s0-{token.pk}.json",
            content_type="application/json",
        )
    except ProviderError as exc:
        _retry_or_fail(
            token=token,
            worker_id=worker_id,
            actor=actor,
            error=exc,
            provider=pinner_.name,
            attempts_field="ipfs_attempts",
            attempts=attempts,
            max_attempts=settings.GLISK.ipfs_max_attempts,
            report=report,
        )
        return
    except FileNotFoundError:
        error = ProviderError(
            "the stored image file is missing; regenerate the image",
            transient=False,
            error_class="image_missing",
        )
        _retry_or_fail(
            token=token,
            worker_id=worker_id,
            actor=actor,
            error=error,
            provider=pinner_.name,
            attempts_field="ipfs_attempts",
            attempts=attempts,
            max_attempts=1,
            report=report,
        )
        return
    try:
        with transaction.atomic():
            token_transition(
                token_id=token.pk,
                to=TokenStatus.READY,
                actor=actor,
                reason="image and metadata pinned",
                sources=[TokenStatus.UPLOADING],
                lease_owner=worker_id,
                fields={
                    "image_cid": image_cid,
                    "metadata_cid": metadata_cid,
                    "metadata": metadata,
                    "ipfs_attempts": attempts,
                    "next_attempt_at": timezone.now(),
                    "last_error": "",
                    "last_error_detail": None,
                },
            )
            stage_nudge(stage="reveal")
    except LeaseLost:
        report.lost += 1
        return
    report.succeeded += 1


# --- running a stage ---------------------------------------------------------------------------

StageWork = Callable[[Token, str, StageReport], None]
MAX_BACKOFF_WAIT_SECONDS = 30.0


def _next_due_in(statuses: list[str]) -> float | None:
    """Seconds until the next unleased token of these statuses is due, or None."""
    now = timezone.now()
    upcoming = (
        Token.objects.filter(status__in=statuses, claimed_by="")
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return None if upcoming is None else max(0.0, (upcoming - now).total_seconds())


def _run_stage(
    *,
    max_concurrency: int,
    stage: str,
    statuses: list[str],
    worker_id: str,
    work: StageWork,
    budget_seconds: float,
    batch_size: int,
) -> StageReport:
    report = StageReport()
    deadline = time.monotonic() + budget_seconds
    lease = settings.GLISK.stage_lease_seconds
    while time.monotonic() < deadline:
        claim = token_claim(statuses=statuses, worker_id=worker_id, limit=batch_size, lease_seconds=lease)
        if not claim.tokens:
            # Tokens backing off after a transient error would otherwise wait for the sweeper
            # (a minute): wait here for the next one that is due soon, holding no lock.
            wait = _next_due_in(statuses)
            if wait is None or wait > MAX_BACKOFF_WAIT_SECONDS or time.monotonic() + wait > deadline:
                break
            time.sleep(max(0.05, wait))
            continue
        if len(claim.tokens) == batch_size:
            # A backlog: ask for one more worker on this stage (debounced, so it fans out gradually).
            stage_nudge(stage=stage)
        report.claimed += len(claim.tokens)
        tokens = Token.objects.select_related("author").in_bulk(claim.ids)
        concurrency = min(len(claim.ids), max_concurrency)
        if concurrency <= 1:
            for token_id in claim.ids:
                report.add(_work_one(work, tokens[token_id], worker_id))
        else:
            # Provider calls wait on the network: a claimed batch is worked on concurrently. Each
            # thread uses (and closes) its own database connection.
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"{stage}-stage") as pool:
                one_token = functools.partial(_work_one, work, worker_id=worker_id, own_connection=True)
                for one in pool.map(one_token, [tokens[t] for t in claim.ids]):
                    report.add(one)
    return report


def _work_one(work: StageWork, token: Token, worker_id: str, *, own_connection: bool = False) -> StageReport:
    report = StageReport()
    try:
        work(token, worker_id, report)
    except LeaseLost:
        report.lost += 1
    finally:
        if own_connection:
            connections.close_all()  # this thread's connections only
    return report


def image_stage_run(
    *, worker_id: str, budget_seconds: float = 120.0, provider: ImageProvider | None = None
) -> StageReport:
    """Drain due `detected`/`generating` tokens in batches of WORKER_BATCH_SIZE."""
    provider = provider or image_provider()
    return _run_stage(
        # Threads only help providers that wait on the network; the local generator is CPU-bound.
        max_concurrency=settings.GLISK.stage_concurrency if getattr(provider, "network_bound", False) else 1,
        stage="image",
        statuses=[TokenStatus.DETECTED, TokenStatus.GENERATING],
        worker_id=worker_id,
        work=lambda token, worker, report: image_generate_token(
            token=token, worker_id=worker, provider=provider, report=report
        ),
        budget_seconds=budget_seconds,
        batch_size=settings.GLISK.worker_batch_size,
    )


def ipfs_stage_run(
    *, worker_id: str, budget_seconds: float = 120.0, pinner_: Pinner | None = None
) -> StageReport:
    """Drain due `uploading` tokens in batches of WORKER_BATCH_SIZE."""
    pinner_ = pinner_ or pinner()
    return _run_stage(
        max_concurrency=settings.GLISK.stage_concurrency if getattr(pinner_, "network_bound", False) else 1,
        stage="ipfs",
        statuses=[TokenStatus.UPLOADING],
        worker_id=worker_id,
        work=lambda token, worker, report: ipfs_pin_token(
            token=token, worker_id=worker, pinner_=pinner_, report=report
        ),
        budget_seconds=budget_seconds,
        batch_size=settings.GLISK.worker_batch_size,
    )
