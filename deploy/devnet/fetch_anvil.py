"""Fetch anvil's npm package for this machine's architecture and install its binary.

Reads ANVIL_VERSION and ANVIL_SHA512_<ARCH> (the integrity package-lock.json records) from the
environment; refuses a download whose sha512 differs. Used by anvil.Dockerfile only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import sys
import tarfile
import urllib.request

ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def main(target: str) -> None:
    arch = ARCHES.get(platform.machine())
    if arch is None:
        sys.exit(f"no anvil package for {platform.machine()}")
    version = os.environ["ANVIL_VERSION"]
    expected = os.environ[f"ANVIL_SHA512_{arch.upper()}"]
    url = f"https://registry.npmjs.org/@foundry-rs/anvil-linux-{arch}/-/anvil-linux-{arch}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != expected:
        sys.exit(f"{url}: sha512 {digest} is not the pinned {expected}")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("package/bin/anvil")
        if member is None:
            sys.exit(f"{url} has no package/bin/anvil")
        binary = member.read()
    with open(target, "wb") as handle:
        handle.write(binary)
    os.chmod(target, 0o755)  # noqa: S103 (an executable for every user)
    print(f"anvil {version} ({arch}, {len(binary):,} bytes) installed at {target}")


if __name__ == "__main__":
    main(sys.argv[1])
