"""Replicate (flux-schnell): predictions created within the account's shared budgets and
waited for (`Prefer: wait`), read again by id or found by seed after a crash, never bought twice;
the output bytes fetched at once (Replicate deletes outputs after an hour)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import requests

from glisk.core.budgets import REPLICATE_CREATE, REPLICATE_READ, budget_room, budget_wait
from lifecycle.providers.errors import (
    ContentPolicyViolation,
    ProviderError,
    admitted,
    http_error,
    throttle_seconds,
    throttled_by_provider,
    throttled_error,
    timeout_error,
    unreachable_error,
)
from lifecycle.providers.images import GeneratedImage, sniff_content_type

_NSFW = re.compile(r"nsfw|content polic|safety|sensitive", re.I)

# Looking for a prediction a dead worker created: how far back past its attempt row (clocks
# differ), and how many pages of the account's predictions (100 each) at most.
RECOVERY_CLOCK_SKEW_SECONDS = 120
RECOVERY_PAGES = 20


# Replicate holds a `Prefer: wait=N` create for at most a minute.
PREFER_WAIT_MAX_SECONDS = 60
# A worker claims as many tokens as the create budget admits within this many seconds.
CLAIM_HORIZON_SECONDS = 5.0


class ReplicateImageProvider:
    """flux-schnell through `replicate.Client`, with the token, base URL and timeouts on the client.

    Every request is admitted through the account's shared budgets first (creates and reads are
    rationed apart, as Replicate rations them). A create asks Replicate to answer when the
    prediction is done (`Prefer: wait`), so a prediction is usually never read at all; one that
    outlives the wait is read at `poll_interval`, each read within the read budget."""

    name = "replicate"
    network_bound = True  # a stage works on a claimed batch concurrently

    def __init__(
        self,
        *,
        api_token: str,
        base_url: str,
        model: str,
        timeout: float,
        poll_interval: float = 1.0,
        download_timeout: float = 30.0,
    ):

        if not api_token:
            raise ProviderError(
                "REPLICATE_API_TOKEN is not set", transient=False, error_class="configuration"
            )
        self.model = model
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.download_timeout = download_timeout
        # Creating a prediction goes through plain httpx, to keep a timeout and to read a 429's
        # headers. It waits for the prediction (`Prefer: wait`) a few seconds less than the
        # timeout; a worker that dies during that wait leaves no id behind, and the next one
        # finds the prediction by its seed (`recover_since`) instead of buying another.
        self.prefer_wait = max(1, min(PREFER_WAIT_MAX_SECONDS, int(timeout) - 5))
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_token}", "User-Agent": "glisk-backend"},
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        )
        # Reads go through the same client, not `replicate.Client`: its transport retries a
        # throttled GET by itself (up to ten times, sleeping whatever Retry-After says), which
        # would spend the account's budget behind the shared limiter's back.
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls) -> ReplicateImageProvider:
        from django.conf import settings

        c = settings.GLISK
        return cls(
            api_token=c.replicate_api_token,
            base_url=c.replicate_base_url,
            model=c.replicate_model_version,
            timeout=c.replicate_timeout_seconds,
        )

    def claimable(self, tokens: int) -> int:
        """Each token costs one create: claim no more than the account's create budget admits
        within CLAIM_HORIZON_SECONDS (each call then waits for its turn, a few seconds at most,
        while the lease heartbeat keeps its token)."""
        return int(min(tokens, budget_room(name=REPLICATE_CREATE, within=CLAIM_HORIZON_SECONDS)))

    def budget_wait(self) -> float:
        return budget_wait(name=REPLICATE_CREATE)

    def _read(self, url: str) -> dict[str, Any]:
        """One read (a prediction, a page of the list) within the account's read budget."""
        admitted(REPLICATE_READ)
        response = self._http.get(url)
        if response.status_code >= 400:
            raise _refusal(response, REPLICATE_READ)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(
                f"Replicate answered {response.status_code} with no JSON object",
                transient=True,
                error_class="bad_response",
            )
        return body

    def _prediction(self, prediction_id: str) -> Any:
        return _as_prediction(self._read(f"/v1/predictions/{prediction_id}"))

    def _input(self, prompt: str, seed: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt": prompt,
            "aspect_ratio": "1:1",
            "num_outputs": 1,
            "output_format": "webp",
            "output_quality": 80,
            "go_fast": True,
        }
        if seed is not None:
            data["seed"] = seed
        return data

    def generate(
        self,
        *,
        prompt: str,
        token_id: int,
        started: Callable[[str], None] | None = None,
        resume: str = "",
        seed: int | None = None,
        recover_since: datetime | None = None,
    ) -> GeneratedImage:
        """Create the prediction (its id reaches `started` before it is read), then poll it; with
        `resume`, poll that earlier prediction instead while Replicate still has it; with
        `recover_since`, first look for one created since then with this seed and prompt."""
        deadline = time.monotonic() + self.timeout
        try:
            prediction = self._existing(resume) if resume else None
            if prediction is None and recover_since is not None and seed is not None:
                prediction = self._find_or_raise(prompt=prompt, seed=seed, since=recover_since)
                if prediction is not None and started is not None:
                    started(prediction.id)
            if prediction is None:
                prediction = self._create(prompt, seed)
                # Stored (its own commit) before any read: a worker that dies while the model
                # still runs leaves a prediction the next one polls instead of buying it again.
                if started is not None:
                    started(prediction.id)
            while prediction.status not in ("succeeded", "failed", "canceled"):
                if time.monotonic() > deadline:
                    raise ProviderError(
                        f"prediction {prediction.id} not finished within {self.timeout:g}s",
                        transient=True,
                        error_class="timeout",
                    )
                time.sleep(self.poll_interval)
                prediction = self._prediction(prediction.id)
        except httpx.TimeoutException:
            raise timeout_error("Replicate", self.timeout) from None
        except httpx.HTTPError as exc:
            raise unreachable_error("Replicate", exc) from None

        if prediction.status == "failed":
            error = str(prediction.error or "prediction failed")
            if _NSFW.search(error):
                raise ContentPolicyViolation(error[:300], external_id=prediction.id)
            # A model failure is not an HTTP error; Replicate's own failures are worth one more try.
            raise ProviderError(
                f"prediction {prediction.id} failed: {error[:300]}", transient=True, error_class="model_error"
            )
        if prediction.status == "canceled":
            raise ProviderError(
                f"prediction {prediction.id} was canceled", transient=True, error_class="canceled"
            )
        output = prediction.output
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str) or not url:
            raise ProviderError(
                f"prediction {prediction.id} returned no output", transient=True, error_class="no_output"
            )
        data, content_type = self._download(url)
        return GeneratedImage(data=data, content_type=content_type, external_id=prediction.id)

    def _create(self, prompt: str, seed: int | None = None) -> Any:
        """POST the prediction and return it as Replicate answered (usually still `starting`)."""
        from replicate.prediction import Prediction

        owner_name, _, version = self.model.partition(":")
        if version:
            path, body = "/v1/predictions", {"version": version, "input": self._input(prompt, seed)}
        else:
            path, body = f"/v1/models/{owner_name}/predictions", {"input": self._input(prompt, seed)}
        admitted(REPLICATE_CREATE)
        response = self._http.post(path, json=body, headers={"Prefer": f"wait={self.prefer_wait}"})
        if response.status_code >= 400:
            raise _refusal(response, REPLICATE_CREATE)
        try:
            return Prediction(**response.json())
        except (ValueError, TypeError) as exc:
            raise ProviderError(
                f"Replicate answered {response.status_code} with no prediction: {type(exc).__name__}",
                transient=True,
                error_class="bad_response",
            ) from None

    def _find_or_raise(self, *, prompt: str, seed: int, since: datetime) -> Any:
        """`_find`, whose every failure (throttled, down, a page the client cannot read) is a
        transient `search_failed`: the row stays searchable, and the next attempt searches again
        rather than buying a second prediction while the first may exist."""
        try:
            return self._find(prompt=prompt, seed=seed, since=since)
        except Exception as exc:  # whatever broke the search, the search is retried
            kind, status = type(exc).__name__, getattr(exc, "status", None)
            throttled = status == 429 or (isinstance(exc, ProviderError) and exc.throttled)
            raise ProviderError(
                f"could not search Replicate for the earlier attempt's prediction ({kind}"
                f"{f' {status}' if status else ''})",
                transient=True,
                error_class="search_failed",  # the row stays searchable, throttled or not
                retry_after=getattr(exc, "retry_after", None),
                status=429 if throttled else None,
            ) from None

    def _find(self, *, prompt: str, seed: int, since: datetime) -> Any:
        """A usable prediction of ours created since `since` with this seed and prompt (the list is
        newest first), or None. Bounded at RECOVERY_PAGES pages, and it stops at the first
        prediction older than the attempt (less the clock skew allowed)."""
        url = "/v1/predictions"
        horizon = since - timedelta(seconds=RECOVERY_CLOCK_SKEW_SECONDS)
        for _ in range(RECOVERY_PAGES):
            page = self._read(url)
            results = page["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
            for prediction in map(_as_prediction, results):
                created = _parse_time(getattr(prediction, "created_at", None))
                if created is not None and created < horizon:
                    return None
                data = prediction.input or {}
                if data.get("seed") == seed and data.get("prompt") == prompt:
                    if prediction.status == "canceled" or getattr(prediction, "data_removed", False):
                        return None
                    return prediction
            following = page.get("next")
            if not following or not isinstance(following, str):
                return None
            if not following.startswith(self.base_url + "/"):  # our key goes to Replicate only
                raise ValueError("the next page is on another host")
            url = following
        return None

    def _existing(self, prediction_id: str) -> Any:
        """An earlier prediction, or None when Replicate no longer has it (or its output)."""
        try:
            prediction = self._prediction(prediction_id)
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        if prediction.status == "canceled" or getattr(prediction, "data_removed", False):
            return None  # nothing left to fetch: a new prediction is the only way
        return prediction

    def _download(self, url: str) -> tuple[bytes, str]:
        try:
            response = requests.get(url, timeout=self.download_timeout)
        except requests.Timeout:
            raise timeout_error("The image download", self.download_timeout) from None
        except requests.RequestException as exc:
            raise unreachable_error("The image download", exc) from None
        if response.status_code == 429:
            # The file host's own limit, not the API's account: the prediction is paid for and
            # its output stays for an hour, so the token waits (counting nothing) and downloads
            # it again.
            raise throttled_error("the image download answered 429", throttle_seconds(response.headers))
        if response.status_code != 200:
            # 404 after an hour: the output is gone and only a new generation can help; a 5xx
            # is the file host's, and the next attempt downloads the same output again.
            raise ProviderError(
                f"image download answered {response.status_code}",
                transient=True,
                error_class=f"download_{response.status_code}",
            )
        data = response.content
        if not data:
            raise ProviderError("image download was empty", transient=True, error_class="no_output")
        # The type is the bytes' own (a server's Content-Type can be wrong, or anything at all):
        # bytes that are no image the model makes (an error page served with 200) are no image.
        content_type = sniff_content_type(data, fallback="")
        if not content_type:
            raise ProviderError(
                f"the image download was not a PNG, JPEG, GIF or WebP image ({len(data)} bytes)",
                transient=True,
                error_class="not_an_image",
            )
        return data, content_type


def _as_prediction(body: Any) -> Any:
    from replicate.prediction import Prediction

    try:
        return Prediction(**body)
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ProviderError(
            f"Replicate answered a prediction it could not describe ({type(exc).__name__})",
            transient=True,
            error_class="bad_response",
        ) from None


def _refusal(response: httpx.Response, budget: str) -> ProviderError:
    """A Replicate error answer (problem JSON) as our error; a 429 pauses `budget`."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = str(problem.get("detail") or problem.get("title") or "")[:300]
    message = f"Replicate answered {response.status_code}: {detail}"
    if response.status_code == 429:
        return throttled_by_provider(budget, message, response.headers, problem)
    return http_error(response.status_code, message)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
