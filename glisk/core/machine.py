"""Which machine a worker runs on, as worker ids name it (no Django: a plain module)."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from pathlib import Path


@functools.cache
def machine_name() -> str:
    """The host name and a tag of this boot and PID namespace: two containers that share a host
    name (host networking, a fixed `hostname:` with replicas), or two machines that do, never
    take each other's process ids for their own."""
    identity = [socket.gethostname()]
    for read in (
        lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        try:
            identity.append(read())
        except OSError:
            identity.append("?")
    tag = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:8]
    return f"{identity[0]}~{tag}"
