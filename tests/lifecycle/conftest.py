from __future__ import annotations

import dataclasses

import pytest

from glisk.devtools.standins.pinata import PinataStandIn
from glisk.devtools.standins.replicate import ReplicateStandIn
from lifecycle.providers.ipfs import PinataPinner
from lifecycle.providers.replicate import ReplicateImageProvider


@pytest.fixture
def replicate():
    server = ReplicateStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def pinata():
    server = PinataStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def fast_retries(settings):
    """Backoff in milliseconds so retried tokens are due again at once."""
    settings.GLISK = dataclasses.replace(
        settings.GLISK, retry_backoff_base_seconds=0.0, retry_backoff_max_seconds=0.0
    )


def configure(settings, **changes):
    settings.GLISK = dataclasses.replace(settings.GLISK, **changes)


@pytest.fixture
def replicate_provider(replicate, settings):
    configure(
        settings,
        image_provider="replicate",
        replicate_api_token=replicate.token,
        replicate_base_url=replicate.url,
        replicate_timeout_seconds=2.0,
    )
    return ReplicateImageProvider(
        api_token=replicate.token,
        base_url=replicate.url,
        model="black-forest-labs/flux-schnell",
        timeout=2.0,
        poll_interval=0.05,
    )


@pytest.fixture
def pinata_pinner(pinata, settings):
    configure(
        settings,
        ipfs_provider="pinata",
        pinata_jwt=pinata.jwt,
        pinata_api_url=pinata.url,
        pinata_timeout_seconds=2.0,
    )
    return PinataPinner(jwt=pinata.jwt, api_url=pinata.url, timeout=2.0)
