from __future__ import annotations

import json
import os
from pathlib import Path

import aleph_cid
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.utils import timezone

from glisk.devtools.standins.pinata import reference_cid_v0, reference_cid_v1
from lifecycle.models import IpfsRecord, Token
from lifecycle.providers.ipfs import LocalPinner, cid_matches, cid_v0, cid_v1
from lifecycle.services.stages import ipfs_stage_run, metadata_bytes, token_metadata
from lifecycle.services.tokens import token_retry
from tests.factories import AuthorFactory, TokenFactory
from tests.lifecycle.conftest import configure

# Published vectors (docs/reference.md).
V0 = {
    b"": "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    b"hello world": "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
    b"hello world\n": "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
}


def test_cid_v1_matches_the_published_vector():
    assert cid_v1(b"hello world") == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


@pytest.mark.parametrize(("data", "cid"), sorted(V0.items()))
def test_cid_v0_matches_the_published_vectors(data, cid):
    assert aleph_cid.compute_cid(data) == cid
    assert cid_v0(data) == cid
    assert reference_cid_v0(data) == cid  # the stand-in's own computation, from the specs


@pytest.mark.parametrize("size", [1, 1000, 262_144])
def test_single_chunk_v0_equals_the_first_principles_computation(size):
    data = os.urandom(size)
    assert cid_v0(data) == reference_cid_v0(data)
    assert len(f"ipfs://{cid_v0(data)}") == 53  # two storage slots on chain, not three


def test_a_cid_is_checked_in_the_version_it_is_written_in():
    data = b'{"name":"GLISK S0 #1"}'
    assert cid_matches(data, cid_v0(data)) and cid_matches(data, cid_v1(data))
    assert not cid_matches(data + b" ", cid_v0(data)) and not cid_matches(data + b" ", cid_v1(data))
    assert not cid_matches(data, "not-a-cid")


def test_the_cid_library_chunks_like_kubo():
    """45,900,000 zero bytes: 176 chunks, two levels of links (the published v0 vector)."""
    assert aleph_cid.compute_cid(b"\0" * 45_900_000) == "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"


@pytest.mark.parametrize("size", [0, 1, 1000, 262_144])
def test_single_chunk_v1_equals_the_first_principles_computation(size):
    data = os.urandom(size)
    assert cid_v1(data) == reference_cid_v1(data)
    assert cid_v1(data).startswith("bafkrei")


def test_multi_chunk_v1_has_a_dag_pb_root():
    assert cid_v1(b"x" * 262_145).startswith("bafybei")


def ready_for_ipfs(**kwargs):
    token = TokenFactory.create(status="uploading", image_content_type="image/png", **kwargs)
    token.image.save(f"{token.pk}.png", ContentFile(b"\x89PNG\r\n\x1a\n" + os.urandom(500)), save=True)
    return token


def run(pinner=None):
    return ipfs_stage_run(worker_id="w-ipfs", budget_seconds=1, pinner_=pinner)


pytestmark = pytest.mark.django_db


def test_handles_linked_only_by_a_replayable_message_are_not_pinned():
    """A static link message can be replayed by whoever once saw its signature: what it claims
    shows on the profile but never goes into metadata, which can never be corrected."""
    author = AuthorFactory.create(twitter_handle="attacker_x", farcaster_handle="attacker")
    token = TokenFactory.create(author=author)
    assert token_metadata(token=token, image_cid="bafkx")["attributes"] == [
        {"trait_type": "Author", "value": author.wallet_address}
    ]
    author.farcaster_verified = True
    names = [a["trait_type"] for a in token_metadata(token=token, image_cid="bafkx")["attributes"]]
    assert names == ["Author", "Farcaster"]


def test_local_store_pins_image_and_metadata_and_serves_them(client, settings):
    author = AuthorFactory.create(
        twitter_handle="@glisk", farcaster_handle="glisk.eth", twitter_verified=True, farcaster_verified=True
    )
    token = ready_for_ipfs(author=author)
    configure(settings, metadata_external_url="https://glisk.xyz/t/{token_id}")
    assert run().succeeded == 1
    token.refresh_from_db()
    assert token.status == "ready"
    with token.image.open("rb") as handle:
        image = handle.read()
    assert token.image_cid == cid_v1(image)
    metadata = token.metadata
    assert metadata["name"] == f"GLISK S0 #{token.pk}"
    assert metadata["image"] == f"ipfs://{token.image_cid}"
    assert metadata["external_url"] == f"https://glisk.xyz/t/{token.pk}"
    assert {"trait_type": "Twitter", "value": "@glisk"} in metadata["attributes"]
    assert {"trait_type": "Farcaster", "value": "glisk.eth"} in metadata["attributes"]
    assert token.metadata_cid == cid_v0(metadata_bytes(metadata))  # the shorter tokenURI
    assert token.metadata_cid.startswith("Qm") and token.image_cid.startswith("bafkrei")

    served = client.get(f"/ipfs/{token.metadata_cid}")
    assert served.status_code == 200 and served["Content-Type"] == "application/json"
    assert json.loads(served.content) == metadata
    served_image = client.get(f"/ipfs/{token.image_cid}")
    assert served_image["Content-Type"] == "image/png" and served_image.content == image
    assert client.get("/ipfs/bafkreinotthere").status_code == 404
    assert client.get("/ipfs/..%2F..%2Fetc%2Fpasswd").status_code == 404
    # A name too long for the file system, where its prefix directory exists: 404, not a 500.
    long_cid = "bafy" + "a" * 300 + token.image_cid[-2:]
    assert client.get(f"/ipfs/{long_cid}").status_code == 404
    kinds = list(IpfsRecord.objects.filter(token=token).values_list("kind", "outcome"))
    assert kinds == [("image", "succeeded"), ("metadata", "succeeded")]


def test_metadata_serialization_is_deterministic():
    token = TokenFactory.build(token_id=7, author=AuthorFactory.build(wallet_address="0x" + "ab" * 20))
    a = metadata_bytes(token_metadata(token=token, image_cid="bafkx"))
    b = metadata_bytes(dict(reversed(list(token_metadata(token=token, image_cid="bafkx").items()))))
    assert a == b
    assert b'"name":"GLISK S0 #7"' in a


def test_pinata_upload_over_http(pinata, pinata_pinner):
    token = ready_for_ipfs()
    assert run(pinata_pinner).succeeded == 1
    token.refresh_from_db()
    assert token.status == "ready"
    # Two requests: the batch's images as one directory, then its metadata as another.
    images_root, metadata_root = pinata.uploads
    assert pinata.pins[images_root]["directory"] == [token.image_cid]
    assert pinata.pins[metadata_root]["directory"] == [token.metadata_cid]
    pin = pinata.pins[token.metadata_cid]
    assert pin["options"] == {"cidVersion": 0}
    assert token.metadata_cid == reference_cid_v0(metadata_bytes(token.metadata))
    assert pin["filename"] == f"glisk-s0-metadata-{token.pk}-{token.pk}/glisk-s0-{token.pk}.json"
    assert pinata.pins[token.image_cid]["options"] == {"cidVersion": 1}
    assert pin["metadata"]["name"] == f"glisk-s0-metadata-{token.pk}-{token.pk}"
    assert pin["metadata"]["keyvalues"] == {
        "kind": "metadata",
        "tokens": f"{token.pk}-{token.pk}",
        "count": "1",
    }
    assert all(r["headers"]["Authorization"] == f"Bearer {pinata.jwt}" for r in pinata.requests)


def test_a_batch_goes_up_in_two_directory_uploads_with_each_file_at_its_own_cid(pinata, pinata_pinner):
    tokens = [ready_for_ipfs() for _ in range(7)]
    assert run(pinata_pinner).succeeded == 7
    assert len(pinata.requests) == 2
    images_root, metadata_root = pinata.uploads
    stored = {t.pk: Token.objects.get(pk=t.pk) for t in tokens}
    assert sorted(pinata.pins[images_root]["directory"]) == sorted(t.image_cid for t in stored.values())
    assert sorted(pinata.pins[metadata_root]["directory"]) == sorted(t.metadata_cid for t in stored.values())
    for token in stored.values():
        with token.image.open("rb") as handle:
            assert pinata.pins[token.image_cid]["data"] == handle.read()
        assert json.loads(pinata.pins[token.metadata_cid]["data"]) == token.metadata
        assert token.metadata_cid == cid_v0(metadata_bytes(token.metadata))
    assert set(IpfsRecord.objects.values_list("outcome", flat=True)) == {"succeeded"}
    assert IpfsRecord.objects.count() == 14


@pytest.mark.parametrize("fault", ["500", "503", "slow"])
def test_pinata_transient_errors_retry(pinata, pinata_pinner, fault):
    pinata.inject(fault)
    token = ready_for_ipfs()
    assert run(pinata_pinner).retried == 1
    token.refresh_from_db()
    assert token.status == "uploading" and token.ipfs_attempts == 1
    assert IpfsRecord.objects.get(token=token).outcome == "transient_error"


@pytest.mark.parametrize("fault", ["400", "401", "403"])
def test_pinata_permanent_errors_fail(pinata, pinata_pinner, fault):
    pinata.inject(fault)
    token = ready_for_ipfs()
    assert run(pinata_pinner).failed == 1
    token.refresh_from_db()
    assert token.status == "failed" and token.failed_stage == "uploading"
    assert f"Pinata answered {fault}" in token.last_error


def test_a_cid_that_does_not_match_fails_loudly(pinata, pinata_pinner):
    pinata.inject("wrong_cid")
    token = ready_for_ipfs()
    assert run(pinata_pinner).failed == 1
    token.refresh_from_db()
    assert token.status == "failed" and "hashes to" in token.last_error
    assert IpfsRecord.objects.get(token=token).error_class == "cid_mismatch"


def test_image_is_not_pinned_again_when_only_the_metadata_failed(pinata, pinata_pinner, fast_retries):
    pinata.inject("none", "500")  # first upload (image) fine, second (metadata) fails
    token = ready_for_ipfs()
    assert run(pinata_pinner).succeeded == 1  # retried within the same run once due again
    token.refresh_from_db()
    assert token.status == "ready"
    image_uploads = [root for root in pinata.uploads if token.image_cid in pinata.pins[root]["directory"]]
    assert len(image_uploads) == 1
    records = list(IpfsRecord.objects.filter(token=token).values_list("kind", "outcome"))
    assert records == [("image", "succeeded"), ("metadata", "transient_error"), ("metadata", "succeeded")]


def test_ipfs_retry_cap_then_operator_retry(pinata, pinata_pinner, settings, fast_retries):
    configure(settings, ipfs_max_attempts=2)
    pinata.inject("503", "503")
    token = ready_for_ipfs()
    run(pinata_pinner)
    token.refresh_from_db()
    assert token.status == "failed" and token.failed_stage == "uploading"
    assert token_retry(token_id=token.pk, actor="operator:ops") == "uploading"
    assert run(pinata_pinner).succeeded == 1
    assert Token.objects.get(pk=token.pk).status == "ready"


def test_missing_image_file_fails_with_a_reason():
    token = TokenFactory.create(status="uploading", image="images/gone.png", image_content_type="image/png")
    run(LocalPinner(Path("/nonexistent")))
    token.refresh_from_db()
    assert token.status == "failed" and "regenerate" in token.last_error


def test_a_pin_whose_worker_died_before_handing_on_is_not_repeated(pinata, pinata_pinner):
    token = ready_for_ipfs()
    with token.image.open("rb") as handle:
        data = handle.read()
    # The dead worker pinned the image and recorded it, then died before saving the CID on the token.
    pinata_pinner.pin(data=data, filename="x.png", content_type="image/png", keyvalues={}, cid_version=1)
    IpfsRecord.objects.create(
        token=token, kind="image", attempt=1, provider="pinata", cid=cid_v1(data), outcome="succeeded"
    )
    uploads_before = len(pinata.uploads)
    assert run(pinata_pinner).succeeded == 1
    assert len(pinata.uploads) == uploads_before + 1  # only the metadata
    assert IpfsRecord.objects.filter(token=token, kind="image", outcome="succeeded").count() == 1


def test_an_operator_action_mid_stage_costs_that_token_only(pinata, pinata_pinner):
    """Regenerate while the token's image is being pinned: the worker's later writes match nothing,
    and the other tokens of its batch are pinned as usual."""
    from lifecycle.services.operator import operator_regenerate

    tokens = [ready_for_ipfs() for _ in range(3)]
    target = tokens[0]

    class OperatorActsDuringThePin:
        name, network_bound = pinata_pinner.name, False

        def pin_directory(self, **kwargs):
            if kwargs["keyvalues"]["kind"] == "image":
                operator_regenerate(token_id=target.pk, operator="ops", reason="wrong colours")
            return pinata_pinner.pin_directory(**kwargs)

    report = run(OperatorActsDuringThePin())
    assert (report.succeeded, report.lost) == (2, 1)
    target.refresh_from_db()
    assert target.status == "generating" and target.claimed_by == "" and target.image_cid == ""
    assert {t.status for t in Token.objects.exclude(pk=target.pk)} == {"ready"}


class _OneUnreadable(FileSystemStorage):
    """A per-file storage (the S3 path) that cannot read one token's image (an I/O error)."""

    failing: str | None = None

    def open(self, name, mode="rb"):
        if name == self.failing:
            raise OSError(5, "Input/output error")
        return super().open(name, mode)


@pytest.mark.django_db(transaction=True)
def test_one_unreadable_image_holds_back_no_other_token_and_fails_at_the_cap(
    settings, tmp_path, fast_retries
):
    """Found in review: one image the storage could not read set the whole batch back with no
    attempt counted, so none of it was ever pinned."""
    configure(settings, ipfs_max_attempts=2)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}._OneUnreadable", "OPTIONS": {"location": str(tmp_path)}},
    }
    tokens = [ready_for_ipfs() for _ in range(3)]
    _OneUnreadable.failing = tokens[1].image.name
    try:
        report = run()
    finally:
        _OneUnreadable.failing = None
    assert report.succeeded == 2
    statuses = dict(Token.objects.values_list("pk", "status"))
    assert statuses == {tokens[0].pk: "ready", tokens[1].pk: "failed", tokens[2].pk: "ready"}
    bad = Token.objects.get(pk=tokens[1].pk)
    assert bad.ipfs_attempts == 2 and bad.failed_stage == "uploading"
    assert bad.last_error == "ipfs stage: unexpected OSError (gave up after 2 attempts)"
    assert not IpfsRecord.objects.filter(token_id=tokens[1].pk).exists()  # nothing pinned for it


class _StorageDown(FileSystemStorage):
    """A per-file storage whose service cannot be reached: no image can be read."""

    def open(self, name, mode="rb"):
        raise ConnectionError("storage endpoint unreachable")


@pytest.mark.django_db(transaction=True)
def test_a_storage_outage_waits_the_maximum_backoff_between_attempts(settings, tmp_path):
    """Found in review: with every image unreadable, each token failed alone and counted an
    attempt with the usual short backoff, so an outage of half a minute failed the whole
    backlog. When no token of a batch goes through, each attempt now waits the maximum backoff:
    an outage has (IPFS_MAX_ATTEMPTS - 1) x RETRY_BACKOFF_MAX_SECONDS to pass."""
    configure(settings, retry_backoff_base_seconds=0.0, retry_backoff_max_seconds=300.0)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}._OneUnreadable", "OPTIONS": {"location": str(tmp_path)}},
    }
    tokens = [ready_for_ipfs() for _ in range(4)]
    # One whose image was pinned before needs no read, and goes through (found in a later review:
    # that made the others back off as usual, and fail within seconds with few attempts).
    pinned = ready_for_ipfs(image_cid=cid_v1(b"pinned before"))
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}._StorageDown", "OPTIONS": {"location": str(tmp_path)}},
    }
    report = run()
    assert (report.succeeded, report.failed, report.retried) == (1, 0, 4)
    assert Token.objects.get(pk=pinned.pk).status == "ready"
    for token in Token.objects.filter(pk__in=[t.pk for t in tokens]):
        assert token.status == "uploading" and token.ipfs_attempts == 1 and token.claimed_by == ""
        assert token.last_error == "ipfs stage: unexpected ConnectionError"
        assert (token.next_attempt_at - timezone.now()).total_seconds() > 250


@pytest.mark.django_db(transaction=True)
def test_a_token_alone_in_its_stage_that_keeps_failing_still_fails_at_the_cap(
    settings, tmp_path, fast_retries
):
    """Found in review: a token that broke its batch while alone in its stage was set back
    uncounted each time, and never failed."""
    configure(settings, ipfs_max_attempts=2)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}._OneUnreadable", "OPTIONS": {"location": str(tmp_path)}},
    }
    token = ready_for_ipfs()
    _OneUnreadable.failing = token.image.name
    try:
        report = run()
    finally:
        _OneUnreadable.failing = None
    assert (report.claimed, report.failed) == (2, 1)
    token.refresh_from_db()
    assert token.status == "failed" and token.ipfs_attempts == 2
    assert token.last_error == "ipfs stage: unexpected OSError (gave up after 2 attempts)"
