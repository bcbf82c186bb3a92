"""Django's storage API over a PostgreSQL table (`StoredFile`), the default for generated images.

The image stage and the IPFS stage may run on different machines; a file on one worker's disk is
missing on the others. Every worker shares the database, so the bytes live there. Larger
deployments can use S3-compatible object storage instead (FILE_STORAGE=s3, django-storages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import IO, Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, default_storage
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.deconstruct import deconstructible

from glisk.core.models import StoredFile

# The most content one INSERT carries: the values travel as text (bytea in hex, twice the size),
# and PostgreSQL refuses a statement over 1 GB.
SAVE_MANY_BYTES = 32 * 1024 * 1024


@deconstructible(path="glisk.core.storage.DatabaseStorage")
class DatabaseStorage(Storage):
    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        content = StoredFile.objects.filter(name=name).values_list("content", flat=True).first()
        if content is None:
            raise FileNotFoundError(name)
        return ContentFile(bytes(content), name=name)

    def _save(self, name: str, content: IO[Any]) -> str:
        # Saved meanwhile under this name with the same bytes (two workers on one token: names
        # carry the digest) is a success; other bytes are refused.
        saved, failed = self.save_many({name: b"".join(chunk for chunk in File(content).chunks())})
        if name in failed:
            raise failed[name]
        return saved[name]

    def exists(self, name: str) -> bool:
        return StoredFile.objects.filter(name=name).exists()

    def delete(self, name: str) -> None:
        StoredFile.objects.filter(name=name).delete()

    def size(self, name: str) -> int:
        size = StoredFile.objects.filter(name=name).values_list("size", flat=True).first()
        if size is None:
            raise FileNotFoundError(name)
        return int(size)

    def url(self, name: str | None) -> str:
        raise ValueError("files in the database have no URL; the admin serves token images itself")

    def save_many(self, files: Mapping[str, bytes]) -> tuple[dict[str, str], dict[str, Exception]]:
        """Save several files (a stage's batch of images): one statement per SAVE_MANY_BYTES of
        content. Returns the names saved and, apart, the error of each file that could not be:
        a statement that fails is tried again file by file, so one bad file costs only itself.
        A name saved before keeps its row, which must hold the same bytes (names carry a digest
        of the content, so two workers on one token save the same thing)."""
        saved: dict[str, str] = {}
        failed: dict[str, Exception] = {}
        chunk: dict[str, bytes] = {}
        size = 0
        for name, data in files.items():
            if chunk and size + len(data) > SAVE_MANY_BYTES:
                self._save_chunk(chunk, saved, failed)
                chunk, size = {}, 0
            chunk[name] = data
            size += len(data)
        if chunk:
            self._save_chunk(chunk, saved, failed)
        return saved, failed

    def _save_chunk(
        self, files: dict[str, bytes], saved: dict[str, str], failed: dict[str, Exception]
    ) -> None:
        try:
            with transaction.atomic():
                inserted = self._insert(files)
        except DatabaseError as exc:
            if len(files) == 1:
                failed.update(dict.fromkeys(files, exc))
            else:  # which file it was: each on its own
                for name, data in files.items():
                    self._save_chunk({name: data}, saved, failed)
            return
        existing = [name for name in files if name not in inserted]
        stored = (
            dict(StoredFile.objects.filter(name__in=existing).values_list("name", "content"))
            if existing
            else {}
        )
        for name in files:
            if name in inserted or bytes(stored.get(name) or b"") == files[name]:
                saved[name] = name
            else:
                failed[name] = FileExistsError(f"{name} is stored already with other content")

    def _insert(self, files: dict[str, bytes]) -> set[str]:
        now = timezone.now()
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(files))
        params: list[Any] = []
        for name, data in files.items():
            params += [name, data, len(data), now]
        table = connection.ops.quote_name(StoredFile._meta.db_table)
        # The table name from the model's metadata; every value is a parameter.
        sql = f"INSERT INTO {table} (name, content, size, created_at) VALUES {rows}"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} ON CONFLICT (name) DO NOTHING RETURNING name", params)
            return {row[0] for row in cursor.fetchall()}

    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """The stored bytes of each of `names` that exists, in one query."""
        found = StoredFile.objects.filter(name__in=list(names)).values_list("name", "content")
        return {name: bytes(content) for name, content in found}


def storage_save_many(files: Mapping[str, bytes]) -> tuple[dict[str, str], dict[str, Exception]]:
    """Save several files on the default storage; returns each requested name as stored and,
    apart, the error of each file that could not be saved (the others are saved regardless). One
    statement per chunk on the database storage, one `save` each on the others."""
    storage = default_storage
    if isinstance(storage, DatabaseStorage):
        return storage.save_many(files)
    saved: dict[str, str] = {}
    failed: dict[str, Exception] = {}
    for name, data in files.items():
        try:
            saved[name] = str(storage.save(name, ContentFile(data)))
        except Exception as exc:  # a full disk, an unreachable bucket: that file, not the batch
            failed[name] = exc
    return saved, failed


def storage_read_many(names: Iterable[str]) -> dict[str, bytes]:
    """The bytes of each of `names` the default storage has (missing names are left out)."""
    storage = default_storage
    wanted = [name for name in names if name]
    if isinstance(storage, DatabaseStorage):
        return storage.read_many(wanted)
    found: dict[str, bytes] = {}
    for name in wanted:
        try:
            with storage.open(name, "rb") as handle:
                found[name] = handle.read()
        except FileNotFoundError:
            continue
    return found
