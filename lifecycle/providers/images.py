"""Image providers: what a provider answers, the local generator, and the choice between it and
Replicate (`lifecycle.providers.replicate`).

Both return the image *bytes* with their real content type: Replicate deletes outputs after an
hour, so the bytes are fetched at once and stored by the stage.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

_SNIFF = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
]


def sniff_content_type(data: bytes, fallback: str = "application/octet-stream") -> str:
    """The image type from its magic bytes (a server's Content-Type can be wrong or missing)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, content_type in _SNIFF:
        if data.startswith(magic):
            return content_type
    return fallback


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    content_type: str
    external_id: str = ""


class ImageProvider(Protocol):
    name: str

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
        """One image. A provider that bills per generation calls `started(external_id)` as soon as
        the paid work exists, and with `resume` (an id an earlier, dead worker was given) fetches
        that work instead of paying for it again, when the provider still has it. `seed` makes
        the work recognisable: with `recover_since` (an earlier worker died before it learnt the
        id), work created since then with this seed and prompt is fetched instead of bought."""
        ...


class LocalImageProvider:
    """Deterministic from prompt and token id, offline, a few milliseconds per image."""

    name = "local"

    def __init__(self, size: int = 256):
        self.size = size

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
        from PIL import Image, ImageDraw

        digest = hashlib.sha256(f"{token_id}:{prompt}".encode()).digest()
        size = self.size
        image = Image.new("RGB", (size, size), tuple(digest[0:3]))
        draw = ImageDraw.Draw(image)
        for i in range(8):
            b = digest[3 + i * 3 : 6 + i * 3]
            x0, y0 = (b[0] * size) // 256, (b[1] * size) // 256
            radius = 16 + (b[2] * size) // 512
            color = tuple(digest[(i * 5) % 29 : (i * 5) % 29 + 3])
            if i % 2:
                draw.ellipse((x0 - radius, y0 - radius, x0 + radius, y0 + radius), fill=color)
            else:
                draw.rectangle((x0 - radius, y0 - radius // 2, x0 + radius, y0 + radius // 2), fill=color)
        draw.text((8, size - 18), f"GLISK #{token_id}", fill=(255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False)
        return GeneratedImage(
            data=buffer.getvalue(), content_type="image/png", external_id=f"local-{digest[:6].hex()}"
        )


def image_provider() -> ImageProvider:
    from django.conf import settings

    if settings.GLISK.image_provider == "replicate":
        from lifecycle.providers.replicate import ReplicateImageProvider

        return ReplicateImageProvider.from_settings()
    return LocalImageProvider(size=settings.GLISK.local_image_size)
