"""The image stage: the author's prompt → an image from the provider → stored bytes → `uploading`."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Q

from authors.selectors import author_get_by_wallet
from lifecycle.models import AttemptOutcome, ImageJob, Token, TokenStatus
from lifecycle.providers.errors import ContentPolicyViolation, ProviderError
from lifecycle.providers.images import GeneratedImage, ImageProvider, image_provider
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
from lifecycle.services.tokens import token_transition

logger = logging.getLogger(__name__)

ACTOR = "stage:image"


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
    extension = EXTENSIONS.get(content_type, "bin")
    return str(default_storage.save(f"images/{token.pk}-{digest}.{extension}", ContentFile(data)))


def _generate_recorded(
    *, token: Token, worker_id: str, provider: ImageProvider, prompt: str, attempt: int, fallback: bool
) -> StoredImage:
    """One generation, its bytes stored at once and the attempt recorded with where they are.

    The provider's id for the paid work is kept on the attempt row (its own commit) before the
    generation is awaited; a worker that takes the token over after a crash resumes that work
    instead of paying for it again."""
    lease_still_ours(token, worker_id)
    resumable = _unfinished_generation(token, prompt=prompt, fallback=fallback)

    def generate_and_store(job: ImageJob) -> tuple[GeneratedImage, str]:
        def started(external_id: str) -> None:
            ImageJob.objects.filter(pk=job.pk).update(external_id=external_id[:128])

        if resumable is not None:
            logger.info("stage.image_resumed", extra={"token_id": token.pk, "job": job.pk})
        image = provider.generate(
            prompt=prompt,
            token_id=token.pk,
            started=started,
            resume=job.external_id if resumable else "",
            seed=generation_seed(job),
            # The row exists but no id reached it: its worker may have died with the request in
            # flight, so the provider is asked for work with this row's seed before paying again.
            recover_since=job.created_at if resumable is not None and not job.external_id else None,
        )
        return image, _store_image(token, image.data, image.content_type)

    image, path = attempt_recorded(
        ImageJob,
        started_row={
            "token": token,
            "attempt": attempt,
            "provider": provider.name,
            "prompt_text": prompt,
            "fallback": fallback,
        },
        row=resumable,
        call=generate_and_store,
        succeeded=lambda done: {
            "external_id": done[0].external_id[:128],
            "image_bytes": len(done[0].data),
            "image_path": done[1],
            "content_type": done[0].content_type,
        },
        failed=_failed_fields,
    )
    return StoredImage(path=path, content_type=image.content_type)


def _failed_fields(error: ProviderError) -> dict[str, str]:
    """A failure keeps the prediction id `started` stored, unless the error names its own."""
    external_id = str(getattr(error, "external_id", "") or "")
    return {"external_id": external_id[:128]} if external_id else {}


# Transient failures after which the attempt's prediction may exist and still finish. With its
# id on the row (the wait, a poll or the download failed) it is polled again; without one (the
# create timed out, its connection broke or a gateway failed, its answer was unreadable, or the
# search for it failed) it is searched for by the row's seed, then bought with that seed.
RESUMABLE_WITH_ID = (
    "timeout",
    "connection",
    "bad_response",
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
)
RESUMABLE_WITHOUT_ID = ("timeout", "connection", "bad_response", "search_failed", "http_502", "http_504")


def _unfinished_generation(token: Token, *, prompt: str, fallback: bool) -> ImageJob | None:
    """An attempt of this stint whose prediction may still finish: the provider may have accepted
    (and billed) the work but no result was recorded."""
    # A worker that died left its row `started` (with the id if it got that far); a failure that
    # says nothing about the prediction itself left it running: polled or searched, not bought.
    unfinished = (
        Q(outcome=AttemptOutcome.STARTED)
        | (Q(outcome=AttemptOutcome.TRANSIENT_ERROR, error_class__in=RESUMABLE_WITH_ID) & ~Q(external_id=""))
        | Q(outcome=AttemptOutcome.TRANSIENT_ERROR, error_class__in=RESUMABLE_WITHOUT_ID, external_id="")
    )
    return (
        ImageJob.objects.filter(
            unfinished,
            token=token,
            created_at__gte=token.status_changed_at,
            prompt_text=prompt,
            fallback=fallback,
        )
        .order_by("-created_at")
        .first()
    )


def generation_seed(job: ImageJob) -> int:
    """The model's seed for an attempt row: fixed per row, so work bought for it can be found."""
    digest = hashlib.sha256(f"glisk:{job.token_id}:{job.pk}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


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
    config = settings.GLISK
    if token.status == TokenStatus.DETECTED:
        prompt = prompt_for(token)
        token_transition(
            token_id=token.pk,
            to=TokenStatus.GENERATING,
            actor=ACTOR,
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
                    token=token,
                    worker_id=worker_id,
                    provider=provider,
                    prompt=prompt,
                    attempt=attempts,
                    fallback=fallback,
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
                token=token,
                worker_id=worker_id,
                provider=provider,
                prompt=prompt,
                attempt=attempts,
                fallback=True,
            )
    except ProviderError as exc:
        error = exc
        if isinstance(exc, ContentPolicyViolation):  # the safe prompt was refused as well
            error = ProviderError(
                f"the fallback prompt was refused too: {exc}", transient=False, error_class="content_policy"
            )
        retry_or_fail(
            token=token,
            worker_id=worker_id,
            actor=ACTOR,
            error=error,
            provider=provider.name,
            attempts_field="image_attempts",
            attempts=attempts,
            max_attempts=config.image_max_attempts,
            report=report,
        )
        return

    # Another worker that takes the token over reuses the stored image.
    stage_finish(
        token=token,
        worker_id=worker_id,
        actor=ACTOR,
        source=TokenStatus.GENERATING,
        to=TokenStatus.UPLOADING,
        reason="image stored",
        fields={
            "image": image.path,
            "image_content_type": image.content_type,
            "image_attempts": attempts,
            "prompt_text": prompt,
            "fallback_prompt_used": fallback,
            "image_cid": "",
            "metadata_cid": "",
        },
        next_stage="ipfs",
        report=report,
    )


def image_stage_run(
    *, worker_id: str, budget_seconds: float = 120.0, provider: ImageProvider | None = None
) -> StageReport:
    """Drain due `detected`/`generating` tokens in batches of WORKER_BATCH_SIZE."""
    provider = provider or image_provider()
    return run_stage(
        stage="image",
        worker_id=worker_id,
        work=lambda token, worker, report: image_generate_token(
            token=token, worker_id=worker, provider=provider, report=report
        ),
        max_concurrency=concurrency_for(provider),
        budget_seconds=budget_seconds,
        batch_size=settings.GLISK.worker_batch_size,
    )
