"""The IPFS stage: pin the stored image and the ERC-721 metadata naming it → `ready`."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from lifecycle.models import AttemptOutcome, IpfsRecord, Token, TokenStatus
from lifecycle.providers.errors import ProviderError
from lifecycle.providers.ipfs import (
    IMAGE_CID_VERSION,
    METADATA_CID_VERSION,
    Pinned,
    Pinner,
    cid_of,
    pin_verified,
    pinner,
)
from lifecycle.services.stages.runner import (
    EXTENSIONS,
    StageReport,
    attempt_recorded,
    concurrency_for,
    lease_still_ours,
    retry_or_fail,
    run_stage,
    stage_finish,
)

ACTOR = "stage:ipfs"


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
    *,
    token: Token,
    worker_id: str,
    pinner_: Pinner,
    kind: str,
    attempt: int,
    data: bytes,
    filename: str,
    content_type: str,
    cid_version: int,
) -> str:
    expected = cid_of(data, cid_version)
    if IpfsRecord.objects.filter(
        token=token,
        kind=kind,
        cid=expected,
        outcome=AttemptOutcome.SUCCEEDED,
        created_at__gte=token.status_changed_at,
    ).exists():
        return expected  # pinned in this stint already (its worker died before handing it on)
    lease_still_ours(token, worker_id)
    pinned: Pinned = attempt_recorded(
        IpfsRecord,
        started_row={"token": token, "kind": kind, "attempt": attempt, "provider": pinner_.name},
        call=lambda _row: pin_verified(
            pinner_,
            data=data,
            filename=filename,
            content_type=content_type,
            keyvalues={"token_id": str(token.pk), "kind": kind},
            cid_version=cid_version,
        ),
        succeeded=lambda done: {"cid": done.cid, "size_bytes": done.size},
    )
    return pinned.cid


def ipfs_pin_token(*, token: Token, worker_id: str, pinner_: Pinner, report: StageReport) -> None:
    """Pin the image (unless already pinned) and the metadata; move the token to `ready`."""
    attempts = token.ipfs_attempts + 1
    try:
        image_cid = token.image_cid
        if not image_cid:
            with token.image.open("rb") as handle:
                data = handle.read()
            extension = EXTENSIONS.get(token.image_content_type, "bin")
            image_cid = _pin_recorded(
                token=token,
                worker_id=worker_id,
                pinner_=pinner_,
                kind=IpfsRecord.Kind.IMAGE,
                attempt=attempts,
                data=data,
                filename=f"glisk-s0-{token.pk}.{extension}",
                content_type=token.image_content_type or "application/octet-stream",
                cid_version=IMAGE_CID_VERSION,
            )
            # Kept at once: a metadata failure must not pin the image again.
            if not Token.objects.filter(pk=token.pk, claimed_by=worker_id).update(image_cid=image_cid):
                report.lost += 1
                return
        metadata = token_metadata(token=token, image_cid=image_cid)
        metadata_cid = _pin_recorded(
            token=token,
            worker_id=worker_id,
            pinner_=pinner_,
            kind=IpfsRecord.Kind.METADATA,
            attempt=attempts,
            data=metadata_bytes(metadata),
            filename=f"glisk-s0-{token.pk}.json",
            content_type="application/json",
            cid_version=METADATA_CID_VERSION,  # ipfs://Qm… is one storage slot shorter on chain
        )
    except (ProviderError, FileNotFoundError) as exc:
        missing = isinstance(exc, FileNotFoundError)
        retry_or_fail(
            token=token,
            worker_id=worker_id,
            actor=ACTOR,
            error=exc
            if isinstance(exc, ProviderError)
            else ProviderError(
                "the stored image file is missing; regenerate the image",
                transient=False,
                error_class="image_missing",
            ),
            provider=pinner_.name,
            attempts_field="ipfs_attempts",
            attempts=attempts,
            max_attempts=1 if missing else settings.GLISK.ipfs_max_attempts,
            report=report,
        )
        return
    stage_finish(
        token=token,
        worker_id=worker_id,
        actor=ACTOR,
        source=TokenStatus.UPLOADING,
        to=TokenStatus.READY,
        reason="image and metadata pinned",
        fields={
            "image_cid": image_cid,
            "metadata_cid": metadata_cid,
            "metadata": metadata,
            "ipfs_attempts": attempts,
        },
        next_stage="reveal",
        report=report,
    )


def ipfs_stage_run(
    *, worker_id: str, budget_seconds: float = 120.0, pinner_: Pinner | None = None
) -> StageReport:
    """Drain due `uploading` tokens in batches of WORKER_BATCH_SIZE."""
    pinner_ = pinner_ or pinner()
    return run_stage(
        stage="ipfs",
        worker_id=worker_id,
        work=lambda token, worker, report: ipfs_pin_token(
            token=token, worker_id=worker, pinner_=pinner_, report=report
        ),
        max_concurrency=concurrency_for(pinner_),
        budget_seconds=budget_seconds,
        batch_size=settings.GLISK.worker_batch_size,
    )
