"""Image bytes every worker can read: PostgreSQL (the default) and S3-compatible storage (against a
real S3 wire implementation, moto's server), with the stages on two "machines" (two var/ dirs)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from moto.server import ThreadedMotoServer

from chain.services.keeper import Keeper, reveal_run
from glisk.core.models import StoredFile
from glisk.core.storage import DatabaseStorage
from glisk.devtools import devnet
from lifecycle.models import Token
from lifecycle.providers.images import LocalImageProvider
from lifecycle.providers.ipfs import LocalPinner
from lifecycle.services.stages import image_stage_run, ipfs_stage_run
from tests.factories import AuthorFactory, TokenFactory

pytestmark = pytest.mark.django_db

DATABASE = {"BACKEND": "glisk.core.storage.DatabaseStorage"}
FILESYSTEM = {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_database_storage_keeps_bytes_in_postgresql():
    storage = DatabaseStorage()
    name = storage.save("images/1-abc.png", ContentFile(b"\x89PNG-bytes"))
    assert storage.exists(name) and storage.size(name) == 10
    with storage.open(name) as handle:
        assert handle.read() == b"\x89PNG-bytes"
    assert StoredFile.objects.get(name=name).size == 10
    again = storage.save("images/1-abc.png", ContentFile(b"\x89PNG-bytes"))
    assert again != name  # a taken name gets a new one, never overwrites
    assert storage._save(name, ContentFile(b"\x89PNG-bytes")) == name  # a racing twin: same bytes, fine
    storage.delete(name)
    assert not storage.exists(name)
    with pytest.raises(FileNotFoundError):
        storage.open(name)


def machine(settings, tmp_path, name: str, storage: dict) -> None:
    """Settings as one worker machine sees them: its own var/ (media, local IPFS store)."""
    settings.MEDIA_ROOT = tmp_path / name / "media"
    settings.IPFS_LOCAL_DIR = tmp_path / "shared-ipfs"  # the devnet's gateway, not the images
    settings.STORAGES = {**settings.STORAGES, "default": storage}


def stage_tokens(n: int, author_wallet: str) -> list[int]:
    author = AuthorFactory.create(wallet_address=author_wallet)
    return [TokenFactory.create(token_id=i, author=author).pk for i in range(1, n + 1)]


@pytest.mark.parametrize(("storage", "shared"), [(DATABASE, True), (FILESYSTEM, False)])
def test_the_stages_on_two_machines_reveal_every_token_with_shared_storage(
    chain, accounts, settings, tmp_path, storage, shared
):
    settings.GLISK = dataclasses.replace(settings.GLISK, batch_reveal_wait_seconds=0.0)
    devnet.mint(chain, minter=accounts[2], prompt_author=accounts[3], quantity=4)
    ids = stage_tokens(4, accounts[3])

    machine(settings, tmp_path, "a", storage)
    assert (
        image_stage_run(worker_id="machine-a", budget_seconds=5, provider=LocalImageProvider()).succeeded == 4
    )
    machine(settings, tmp_path, "b", storage)
    report = ipfs_stage_run(
        worker_id="machine-b", budget_seconds=5, pinner_=LocalPinner(settings.IPFS_LOCAL_DIR)
    )
    if not shared:  # the contrast: a file on machine a's disk is missing on machine b
        assert report.failed == 4
        assert {t.last_error for t in Token.objects.all()} == {
            "local: the stored image file is missing; regenerate the image"
        }
        return
    assert report.succeeded == 4
    Token.objects.update(status_changed_at=timezone.now() - timedelta(seconds=60))
    reveal_run(keeper=Keeper(chain=chain, private_key=settings.GLISK.keeper_private_key), budget_seconds=10)
    assert set(Token.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"revealed"}
    states = chain.token_states(ids)
    assert all(states[i].revealed for i in ids)


@pytest.fixture
def s3(settings):
    port = devnet.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
    client.create_bucket(Bucket="glisk-images")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "glisk-images",
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "access_key": credentials["aws_access_key_id"],
                "secret_key": credentials["aws_secret_access_key"],
                "default_acl": None,
                "file_overwrite": False,
            },
        },
    }
    yield client
    server.stop()


def test_s3_storage_carries_images_from_the_image_stage_to_the_ipfs_stage(s3, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "never-used"
    token = TokenFactory.create()
    assert image_stage_run(worker_id="a", budget_seconds=5, provider=LocalImageProvider()).succeeded == 1
    token.refresh_from_db()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="glisk-images")["Contents"]]
    assert keys == [token.image.name]
    assert not (tmp_path / "never-used").exists()
    assert (
        ipfs_stage_run(worker_id="b", budget_seconds=5, pinner_=LocalPinner(tmp_path / "ipfs")).succeeded == 1
    )
    token.refresh_from_db()
    assert token.status == "ready" and token.image_cid
    body = s3.get_object(Bucket="glisk-images", Key=token.image.name)["Body"].read()
    assert default_storage.open(str(token.image.name)).read() == body


def test_database_storage_saves_and_reads_a_batch_in_one_statement_each():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from glisk.core.storage import storage_read_many, storage_save_many

    files = {f"images/{n}-d{n}.png": bytes([n]) * (n + 1) for n in range(5)}
    with CaptureQueriesContext(connection) as saved:
        assert storage_save_many(files) == ({name: name for name in files}, {})
    assert [q["sql"][:6] for q in saved.captured_queries if "SAVEPOINT" not in q["sql"]] == ["INSERT"]
    # Saving again (a worker that took the batch over) keeps the rows; other bytes are refused,
    # and only that file is.
    again, failed = storage_save_many(
        {"images/0-d0.png": files["images/0-d0.png"], "images/1-d1.png": b"other"}
    )
    assert again == {"images/0-d0.png": "images/0-d0.png"}
    assert list(failed) == ["images/1-d1.png"] and isinstance(failed["images/1-d1.png"], FileExistsError)
    with CaptureQueriesContext(connection) as read:
        found = storage_read_many([*files, "images/missing.png"])
    assert len(read.captured_queries) == 1
    assert found == files
    assert StoredFile.objects.filter(name__in=list(files)).count() == 5


def test_a_file_the_database_refuses_costs_only_itself(monkeypatch):
    """A statement that fails (here: a name longer than the column) is tried file by file."""
    from glisk.core import storage as storage_module
    from glisk.core.storage import storage_save_many

    monkeypatch.setattr(storage_module, "SAVE_MANY_BYTES", 10)  # chunks of two 4-byte files
    files = {"images/a.png": b"aaaa", "x" * 300: b"bbbb", "images/c.png": b"cccc"}
    saved, failed = storage_save_many(files)
    assert set(saved) == {"images/a.png", "images/c.png"} and list(failed) == ["x" * 300]
    assert StoredFile.objects.filter(name__in=["images/a.png", "images/c.png"]).count() == 2


def test_filesystem_storage_saves_and_reads_a_batch_file_by_file(settings, tmp_path):
    from glisk.core.storage import storage_read_many, storage_save_many

    machine(settings, tmp_path, "a", FILESYSTEM)
    saved, failed = storage_save_many({"images/1-x.png": b"one", "images/2-y.png": b"two"})
    assert set(saved) == {"images/1-x.png", "images/2-y.png"} and failed == {}
    assert storage_read_many([*saved.values(), "images/none.png"]) == {
        saved["images/1-x.png"]: b"one",
        saved["images/2-y.png"]: b"two",
    }
