"""The IPFS stage: pin the stored image and the ERC-721 metadata naming it → `ready`."""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings
from django.db.models import F

from glisk.core.storage import storage_read_many
from lifecycle.models import AttemptOutcome, IpfsRecord, Token, TokenStatus
from lifecycle.providers.errors import ProviderError
from lifecycle.providers.ipfs import (
    IMAGE_CID_VERSION,
    METADATA_CID_VERSION,
    CidMismatch,
    File,
    Pinned,
    Pinner,
    cid_of,
    pin_verified,
    pinner,
)
from lifecycle.services.stages.calls import Call, calls_finish, calls_run, calls_run_together
from lifecycle.services.stages.outcomes import StageReport, retry_or_fail, stage_hand_on
from lifecycle.services.stages.runner import (
    EXTENSIONS,
    AttemptLimit,
    concurrency_for,
    network_bound,
    run_stage,
)
from lifecycle.services.tokens import tokens_lease_update

ACTOR = "stage:ipfs"


def token_metadata(*, token: Token, image_cid: str) -> dict[str, Any]:
    """The ERC-721 metadata (with OpenSea's attributes) for a token."""
    author = token.author
    attributes: list[dict[str, Any]] = [{"trait_type": "Author", "value": author.wallet_address}]
    # Only handles whose link the wallet proved beyond the replayable static message: pinned
    # metadata can never be corrected.
    if author.twitter_handle and author.twitter_verified:
        attributes.append({"trait_type": "Twitter", "value": author.twitter_handle})
    if author.farcaster_handle and author.farcaster_verified:
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


def _pinned_in_stint(tokens: list[Token]) -> set[tuple[int, str, str]]:
    """(token, kind, CID) of every pin that succeeded since each token entered `uploading` (its
    worker died before handing it on): not pinned again. One query for the batch."""
    found = IpfsRecord.objects.filter(
        token_id__in=[t.pk for t in tokens],
        outcome=AttemptOutcome.SUCCEEDED,
        created_at__gte=F("token__status_changed_at"),
    ).values_list("token_id", "kind", "cid")
    return set(found)


def _pins(
    wanted: dict[int, tuple[Token, bytes, str, str]],
    *,
    kind: str,
    cid_version: int,
    attempts: dict[int, int],
    pinned_before: set[tuple[int, str, str]],
    worker_id: str,
    pinner_: Pinner,
    concurrency: int,
) -> tuple[dict[int, str], list[Call[Pinned]]]:
    """Pin each token's (data, filename, content type) of `kind` unless this stint pinned it
    already, all of them in one directory upload; returns the CIDs pinned (or found pinned) and
    the calls made (failed ones included), one per token.

    A directory of several files that the provider refuses for good names no file: each of its
    files then goes up alone, so that the refusal lands on the token whose file caused it."""
    cids: dict[int, str] = {}
    calls: list[Call[Pinned]] = []
    files: dict[int, File] = {}
    for pk, (token, data, filename, content_type) in wanted.items():
        expected = cid_of(data, cid_version)
        if (pk, kind, expected) in pinned_before:
            cids[pk] = expected
            continue
        files[pk] = File(name=filename, data=data, content_type=content_type)
        calls.append(
            Call(
                token=token,
                started_row={"token": token, "kind": kind, "attempt": attempts[pk], "provider": pinner_.name},
                call=functools.partial(
                    _pin,
                    pinner_,
                    data=data,
                    filename=filename,
                    content_type=content_type,
                    keyvalues={"token_id": str(pk), "kind": kind},
                    cid_version=cid_version,
                ),
            )
        )
    upload = functools.partial(_upload, pinner_, files=files, kind=kind, cid_version=cid_version)
    calls_run_together(IpfsRecord, calls, worker_id=worker_id, work=upload)
    refused = [c for c in calls if c.error is not None and not c.error.transient]
    if len(refused) > 1 and len({id(c.error) for c in refused}) == 1:
        for c in refused:
            c.error = None
        calls_run(
            IpfsRecord, refused, worker_id=worker_id, concurrency=concurrency, paid=network_bound(pinner_)
        )
    calls_finish(IpfsRecord, calls, succeeded=lambda c: {"cid": c.result.cid, "size_bytes": c.result.size})  # type: ignore[union-attr]
    cids.update({c.token.pk: c.result.cid for c in calls if c.error is None and c.result is not None})
    return cids, calls


def _pin(pinner_: Pinner, _row: IpfsRecord, **pin: Any) -> Pinned:
    return pin_verified(pinner_, **pin)


def _upload(
    pinner_: Pinner, live: list[Call[Pinned]], *, files: dict[int, File], kind: str, cid_version: int
) -> None:
    """One directory upload of the live calls' files; each call's result is its file's pin."""
    ids = sorted(c.token.pk for c in live)
    batch = [files[pk] for pk in ids]
    pinned = pinner_.pin_directory(
        folder=f"glisk-s0-{kind}-{ids[0]}-{ids[-1]}",
        files=batch,
        keyvalues={"kind": kind, "tokens": f"{ids[0]}-{ids[-1]}", "count": str(len(ids))},
        cid_version=cid_version,
    )
    for f in batch:
        expected = cid_of(f.data, cid_version)
        if pinned[f.name].cid != expected:
            raise CidMismatch(expected, pinned[f.name].cid)
    for c in live:
        c.result = pinned[files[c.token.pk].name]


def ipfs_pin_batch(
    *, tokens: list[Token], worker_id: str, pinner_: Pinner, report: StageReport, concurrency: int = 1
) -> None:
    """Pin a claimed batch's images (unless already pinned) and metadata; move it to `ready`.

    As a set: one read of the batch's stored images, one query for what this stint pinned
    already, per kind one directory upload, one INSERT of attempt rows and one UPDATE finishing
    them, one write keeping the image CIDs, and one statement handing the batch on."""
    attempts = {t.pk: t.ipfs_attempts + 1 for t in tokens}
    pins = functools.partial(
        _pins,
        attempts=attempts,
        pinned_before=_pinned_in_stint(tokens),
        worker_id=worker_id,
        pinner_=pinner_,
        concurrency=concurrency,
    )
    failures: dict[int, ProviderError] = {}
    lost: set[int] = set()

    def collect(calls: list[Call[Pinned]]) -> None:
        for c in calls:
            if c.lost:
                lost.add(c.token.pk)
            elif c.error is not None:
                failures[c.token.pk] = c.error

    image_cids = {t.pk: t.image_cid for t in tokens if t.image_cid}
    unpinned = [t for t in tokens if not t.image_cid]
    if unpinned:
        images = storage_read_many(str(t.image.name) for t in unpinned)
        wanted: dict[int, tuple[Token, bytes, str, str]] = {}
        for t in unpinned:
            data = images.get(str(t.image.name))
            if data is None:
                failures[t.pk] = MISSING_IMAGE
                continue
            extension = EXTENSIONS.get(t.image_content_type, "bin")
            content_type = t.image_content_type or "application/octet-stream"
            wanted[t.pk] = (t, data, f"glisk-s0-{t.pk}.{extension}", content_type)
        pinned, calls = pins(wanted, kind=IpfsRecord.Kind.IMAGE, cid_version=IMAGE_CID_VERSION)
        collect(calls)
        # Kept at once: a metadata failure must not pin the image again.
        kept = tokens_lease_update(
            fields={pk: {"image_cid": cid} for pk, cid in pinned.items()}, worker_id=worker_id
        )
        lost.update(set(pinned) - kept)
        image_cids.update({pk: cid for pk, cid in pinned.items() if pk in kept})

    metadata = {
        t.pk: token_metadata(token=t, image_cid=image_cids[t.pk]) for t in tokens if t.pk in image_cids
    }
    by_pk = {t.pk: t for t in tokens}
    metadata_cids, calls = pins(
        {
            pk: (by_pk[pk], metadata_bytes(m), f"glisk-s0-{pk}.json", "application/json")
            for pk, m in metadata.items()
        },
        kind=IpfsRecord.Kind.METADATA,
        cid_version=METADATA_CID_VERSION,  # ipfs://Qm… is one storage slot shorter on chain
    )
    collect(calls)

    report.lost += len(lost)
    for pk, error in failures.items():
        retry_or_fail(
            token=by_pk[pk],
            worker_id=worker_id,
            actor=ACTOR,
            error=error,
            provider=pinner_.name,
            attempts_field="ipfs_attempts",
            attempts=attempts[pk],
            max_attempts=1 if error is MISSING_IMAGE else settings.GLISK.ipfs_max_attempts,
            report=report,
        )
    stage_hand_on(
        fields={
            pk: {
                "image_cid": image_cids[pk],
                "metadata_cid": cid,
                "metadata": metadata[pk],
                "ipfs_attempts": attempts[pk],
            }
            for pk, cid in metadata_cids.items()
        },
        worker_id=worker_id,
        actor=ACTOR,
        source=TokenStatus.UPLOADING,
        to=TokenStatus.READY,
        reason="image and metadata pinned",
        next_stage="reveal",
        report=report,
    )


MISSING_IMAGE = ProviderError(
    "the stored image file is missing; regenerate the image", transient=False, error_class="image_missing"
)


def ipfs_pin_token(*, token: Token, worker_id: str, pinner_: Pinner, report: StageReport) -> None:
    """`ipfs_pin_batch` for one claimed token."""
    ipfs_pin_batch(tokens=[token], worker_id=worker_id, pinner_=pinner_, report=report)


def ipfs_stage_run(
    *,
    worker_id: str,
    budget_seconds: float = 120.0,
    pinner_: Pinner | None = None,
    max_batches: int | None = None,
    wait_for_backoff: bool = True,
) -> StageReport:
    """Drain due `uploading` tokens in batches of WORKER_BATCH_SIZE."""
    pinner_ = pinner_ or pinner()
    concurrency = concurrency_for(pinner_)
    return run_stage(
        stage="ipfs",
        worker_id=worker_id,
        work=lambda tokens, worker, report: ipfs_pin_batch(
            tokens=tokens, worker_id=worker, pinner_=pinner_, report=report, concurrency=concurrency
        ),
        budget_seconds=budget_seconds,
        batch_size=settings.GLISK.worker_batch_size,
        attempts=AttemptLimit("ipfs_attempts", settings.GLISK.ipfs_max_attempts),
        max_batches=max_batches,
        wait_for_backoff=wait_for_backoff,
        provider=pinner_,
        # One upload a batch: let a batch gather before it goes up (a local store pins at once).
        gather_seconds=settings.GLISK.ipfs_batch_wait_seconds if network_bound(pinner_) else 0.0,
    )
