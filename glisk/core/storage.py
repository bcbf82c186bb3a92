"""Django's storage API over a PostgreSQL table (`StoredFile`), the default for generated images.

The image stage and the IPFS stage may run on different machines; a file on one worker's disk is
missing on the others. Every worker shares the database, so the bytes live there. Larger
deployments can use S3-compatible object storage instead (FILE_STORAGE=s3, django-storages).
"""

from __future__ import annotations

from typing import IO, Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.db import IntegrityError, transaction
from django.utils.deconstruct import deconstructible

from glisk.core.models import StoredFile


@deconstructible(path="glisk.core.storage.DatabaseStorage")
class DatabaseStorage(Storage):
    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        content = StoredFile.objects.filter(name=name).values_list("content", flat=True).first()
        if content is None:
            raise FileNotFoundError(name)
        return ContentFile(bytes(content), name=name)

    def _save(self, name: str, content: IO[Any]) -> str:
        data = b"".join(chunk for chunk in File(content).chunks())
        try:
            with transaction.atomic():
                StoredFile.objects.create(name=name, content=data, size=len(data))
        except IntegrityError:
            # Saved meanwhile under this name (two workers on one token: names carry the digest).
            existing = StoredFile.objects.filter(name=name).values_list("content", flat=True).first()
            if existing is None or bytes(existing) != data:
                raise
        return name

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
