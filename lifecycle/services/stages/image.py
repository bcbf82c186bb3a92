"""The image stage: the author's prompt → an image from the provider → stored bytes → `uploading`."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import F

from authors.selectors import author_get_by_wallet
from glisk.core.storage import storage_save_many
from lifecycle.models import AttemptOutcome, ImageJob, Token, TokenStatus
from lifecycle.providers.errors import ContentPolicyViolation, ProviderError
from lifecycle.providers.images import GeneratedImage, ImageProvider, image_provider
from lifecycle.services.stages.calls import Call, calls_finish, calls_run
from lifecycle.services.stages.outcomes import StageReport, retry_or_fail, stage_hand_on
from lifecycle.services.stages.runner import (
    EXTENSIONS,
    AttemptLimit,
    concurrency_for,
    network_bound,
    run_stage,
)
from lifecycle.services.tokens import tokens_lease_update, tokens_move

logger = logging.getLogger(__name__)

ACTOR = "stage:image"


def prompt_for(token: Token, *, fallback: Callable[[], str] | None = None) -> str:
    """The author's prompt, else the default author's, else DEFAULT_PROMPT. `fallback`: where a
    batch gets the latter two from (looked up once for the batch)."""
    if token.author.prompt_text:
        return token.author.prompt_text
    return (fallback or _default_prompt)()


def _default_prompt() -> str:
    default_author = author_get_by_wallet(wallet=settings.GLISK.default_author_wallet)
    if default_author is not None and default_author.prompt_text:
        return default_author.prompt_text
    return settings.GLISK.default_prompt


@dataclass(frozen=True)
class StoredImage:
    path: str
    content_type: str


@dataclass
class Generated:
    """A token whose image is stored, ready to hand on."""

    image: StoredImage
    prompt: str
    fallback: bool
    attempts: int


def _image_name(token_id: int, image: GeneratedImage) -> str:
    digest = hashlib.sha256(image.data).hexdigest()[:16]
    return f"images/{token_id}-{digest}.{EXTENSIONS.get(image.content_type, 'bin')}"


def _generation(
    token: Token,
    *,
    provider: ImageProvider,
    prompt: str,
    attempt: int,
    fallback: bool,
    resumable: ImageJob | None,
) -> Call[GeneratedImage]:
    """One paid generation as a call of the batch. The provider's id for the work is kept on the
    attempt row (its own commit) before the generation is awaited; a worker that takes the token
    over after a crash resumes that work (`resumable`) instead of paying for it again."""

    def generate(job: ImageJob) -> GeneratedImage:
        def started(external_id: str) -> None:
            ImageJob.objects.filter(pk=job.pk).update(external_id=external_id[:128])

        if resumable is not None:
            logger.info("stage.image_resumed", extra={"token_id": token.pk, "job": job.pk})
        return provider.generate(
            prompt=prompt,
            token_id=token.pk,
            started=started,
            resume=job.external_id if resumable else "",
            seed=generation_seed(job),
            # The row exists but no id reached it: its worker may have died with the request in
            # flight, so the provider is asked for work with this row's seed before paying again.
            recover_since=job.created_at if resumable is not None and not job.external_id else None,
        )

    return Call(
        token=token,
        started_row={
            "token": token,
            "attempt": attempt,
            "provider": provider.name,
            "prompt_text": prompt,
            "fallback": fallback,
        },
        call=generate,
        row=resumable,
    )


def _generate(
    calls: list[Call[GeneratedImage]], *, worker_id: str, concurrency: int, paid: bool = False
) -> dict[int, StoredImage]:
    """Make a batch's generations, store their images (one write for the batch on the database
    storage) and record each attempt with where its image is. Returns the stored images."""
    calls_run(ImageJob, calls, worker_id=worker_id, concurrency=concurrency, paid=paid)
    made = {c.token.pk: (c, c.result) for c in calls if c.result is not None and c.error is None}
    names = {pk: _image_name(pk, image) for pk, (_, image) in made.items()}
    stored: dict[int, StoredImage] = {}
    saved, failed = storage_save_many({names[pk]: image.data for pk, (_, image) in made.items()})
    for pk, (c, image) in list(made.items()):
        if names[pk] in saved:
            stored[pk] = StoredImage(path=saved[names[pk]], content_type=image.content_type)
            continue
        # Paid for but not stored (a full disk): an attempt that failed like any unexpected
        # error, so it backs off and fails at the cap instead of being bought at every lease.
        exc = failed[names[pk]]
        logger.error("stage.image_store_failed", extra={"token_id": pk, "error_class": type(exc).__name__})
        c.failed_unexpectedly(exc)
        del made[pk]

    def succeeded(c: Call[GeneratedImage]) -> dict[str, Any]:
        image = made[c.token.pk][1]
        return {
            "external_id": image.external_id[:128],
            "image_bytes": len(image.data),
            "image_path": stored[c.token.pk].path,
            "content_type": image.content_type,
        }

    calls_finish(ImageJob, calls, succeeded=succeeded, failed=_failed_fields)
    return stored


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
    "throttled",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "download_500",
    "download_502",
    "download_503",
    "download_504",
)
RESUMABLE_WITHOUT_ID = ("timeout", "connection", "bad_response", "search_failed", "http_502", "http_504")


def _unfinished(job: ImageJob, *, prompt: str, fallback: bool) -> bool:
    """Whether an attempt of this stint may still finish: the provider may have accepted (and
    billed) the work but no result was recorded. A worker that died left its row `started` (with
    the id if it got that far); a failure that says nothing about the prediction itself left it
    running: polled or searched, not bought."""
    if job.prompt_text != prompt or job.fallback != fallback:
        return False
    if job.outcome == AttemptOutcome.STARTED:
        return True
    if job.outcome != AttemptOutcome.TRANSIENT_ERROR:
        return False
    if job.external_id:
        return job.error_class in RESUMABLE_WITH_ID
    return job.error_class in RESUMABLE_WITHOUT_ID


def generation_seed(job: ImageJob) -> int:
    """The model's seed for an attempt row: fixed per row, so work bought for it can be found."""
    digest = hashlib.sha256(f"glisk:{job.token_id}:{job.pk}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _stint_jobs(tokens: list[Token]) -> dict[int, list[ImageJob]]:
    """Each token's attempts since it entered its current status, newest first (one query)."""
    jobs: dict[int, list[ImageJob]] = {}
    if tokens:
        found = ImageJob.objects.filter(
            token_id__in=[t.pk for t in tokens], created_at__gte=F("token__status_changed_at")
        ).order_by("-created_at", "-pk")
        for job in found:
            jobs.setdefault(job.token_id, []).append(job)
    return jobs


def _finished(jobs: list[ImageJob]) -> ImageJob | None:
    """A generation that succeeded in this stint but was never handed on (its worker died between
    storing the image and the transition): reused, not paid for twice."""
    for job in jobs:
        if job.outcome == AttemptOutcome.SUCCEEDED and job.image_path:
            return job if default_storage.exists(job.image_path) else None
    return None


def image_generate_batch(
    *, tokens: list[Token], worker_id: str, provider: ImageProvider, report: StageReport, concurrency: int = 1
) -> None:
    """Generate and store a claimed batch's images and move the batch to `uploading`.

    The batch moves as a set: one statement starts it (`detected` → `generating` with each
    token's prompt), one writes its attempt rows and one finishes them, one stores the images,
    and one hands it on; only the provider calls are per token."""
    config = settings.GLISK
    fresh = [t for t in tokens if t.status == TokenStatus.DETECTED]
    resuming = [t for t in tokens if t.status == TokenStatus.GENERATING]
    batch_default = functools.cache(_default_prompt)  # once per batch, only if an author has none
    if fresh:
        prompts = {t.pk: prompt_for(t, fallback=batch_default) for t in fresh}
        started = tokens_move(
            fields={
                pk: {"prompt_text": prompt, "fallback_prompt_used": False} for pk, prompt in prompts.items()
            },
            to=TokenStatus.GENERATING,
            source=TokenStatus.DETECTED,
            lease_owner=worker_id,
            release_lease=False,
            actor=ACTOR,
            reason="generation started",
        )
        report.lost += len(fresh) - len(started)
        fresh = [t for t in fresh if t.pk in started]
        for t in fresh:
            t.status, t.prompt_text, t.fallback_prompt_used = TokenStatus.GENERATING, prompts[t.pk], False

    done: dict[int, Generated] = {}
    calls: list[Call[GeneratedImage]] = []
    plans: dict[int, tuple[str, bool, int]] = {}  # token → (prompt, fallback, attempts) of its call
    earlier = _stint_jobs(resuming)  # a token just started has no earlier attempt in this stint
    for t in fresh + resuming:
        attempts = t.image_attempts + 1
        prompt, fallback = t.prompt_text or prompt_for(t, fallback=batch_default), t.fallback_prompt_used
        jobs = earlier.get(t.pk, [])
        reused = _finished(jobs)
        if reused is not None:
            logger.info("stage.image_reused", extra={"token_id": t.pk, "job": reused.pk})
            done[t.pk] = Generated(
                image=StoredImage(path=reused.image_path, content_type=reused.content_type),
                prompt=reused.prompt_text,
                fallback=reused.fallback,
                attempts=max(reused.attempt, t.image_attempts),
            )
            continue
        resumable = next((j for j in jobs if _unfinished(j, prompt=prompt, fallback=fallback)), None)
        plans[t.pk] = (prompt, fallback, attempts)
        calls.append(
            _generation(
                t, provider=provider, prompt=prompt, attempt=attempts, fallback=fallback, resumable=resumable
            )
        )
    paid = network_bound(provider)
    stored = _generate(calls, worker_id=worker_id, concurrency=concurrency, paid=paid)

    # A refused prompt is retried once with the safe prompt, recorded on the token first.
    refused = [c for c in calls if isinstance(c.error, ContentPolicyViolation) and not plans[c.token.pk][1]]
    if refused:
        safe = config.fallback_censored_prompt
        kept = tokens_lease_update(
            fields={c.token.pk: {"prompt_text": safe, "fallback_prompt_used": True} for c in refused},
            worker_id=worker_id,
        )
        retries = []
        for c in refused:
            plans[c.token.pk] = (safe, True, plans[c.token.pk][2])
            if c.token.pk not in kept:
                c.error, c.lost = None, True
                continue
            retries.append(
                _generation(
                    c.token,
                    provider=provider,
                    prompt=safe,
                    attempt=plans[c.token.pk][2],
                    fallback=True,
                    resumable=None,
                )
            )
        stored.update(_generate(retries, worker_id=worker_id, concurrency=concurrency, paid=paid))
        retried = {c.token.pk: c for c in retries}
        calls = [retried.get(c.token.pk, c) for c in calls]

    for c in calls:
        prompt, fallback, attempts = plans[c.token.pk]
        if c.lost:
            report.lost += 1
        elif c.error is not None:
            error = c.error
            if isinstance(error, ContentPolicyViolation):  # the safe prompt was refused as well
                error = ProviderError(
                    f"the fallback prompt was refused too: {error}",
                    transient=False,
                    error_class="content_policy",
                )
            retry_or_fail(
                token=c.token,
                worker_id=worker_id,
                actor=ACTOR,
                error=error,
                provider=provider.name,
                attempts_field="image_attempts",
                attempts=attempts,
                max_attempts=config.image_max_attempts,
                report=report,
            )
        else:
            done[c.token.pk] = Generated(
                image=stored[c.token.pk], prompt=prompt, fallback=fallback, attempts=attempts
            )

    # Another worker that takes a token over reuses its stored image.
    stage_hand_on(
        fields={
            pk: {
                "image": g.image.path,
                "image_content_type": g.image.content_type,
                "image_attempts": g.attempts,
                "prompt_text": g.prompt,
                "fallback_prompt_used": g.fallback,
                "image_cid": "",
                "metadata_cid": "",
            }
            for pk, g in done.items()
        },
        worker_id=worker_id,
        actor=ACTOR,
        source=TokenStatus.GENERATING,
        to=TokenStatus.UPLOADING,
        reason="image stored",
        next_stage="ipfs",
        report=report,
    )


def image_generate_token(
    *, token: Token, worker_id: str, provider: ImageProvider, report: StageReport
) -> None:
    """`image_generate_batch` for one claimed token."""
    image_generate_batch(tokens=[token], worker_id=worker_id, provider=provider, report=report)


def image_stage_run(
    *,
    worker_id: str,
    budget_seconds: float = 120.0,
    provider: ImageProvider | None = None,
    after_batch: Callable[[], None] | None = None,
) -> StageReport:
    """Drain due `detected`/`generating` tokens in batches of WORKER_BATCH_SIZE."""
    provider = provider or image_provider()
    concurrency = concurrency_for(provider)
    return run_stage(
        stage="image",
        worker_id=worker_id,
        work=lambda tokens, worker, report: image_generate_batch(
            tokens=tokens, worker_id=worker, provider=provider, report=report, concurrency=concurrency
        ),
        budget_seconds=budget_seconds,
        batch_size=settings.GLISK.worker_batch_size,
        attempts=AttemptLimit("image_attempts", settings.GLISK.image_max_attempts),
        after_batch=after_batch,
        provider=provider,
    )
