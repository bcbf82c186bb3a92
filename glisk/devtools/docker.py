"""The Docker side of `make test-containers`: a running engine (or Debian's docker.io installed
and `dockerd` started for the run), Compose v2 or docker-compose 1.29, and the images: ours, and
stand-ins built from Debian's archive for public base images that cannot be pulled
(deploy/containers/README.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_IMAGE = "glisk-backend:latest"
ANVIL_IMAGE = "glisk-anvil:1.7.1"
DEBIAN_IMAGE = "glisk-standin/debian:bookworm"
STANDIN_BASES = {"python:3.11-slim": "python", "postgres:17": "postgres"}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class RunFailed(RuntimeError):
    pass


def say(text: str) -> None:
    print(f"[containers] {text}", flush=True)


def run(
    args: list[str],
    *,
    check: bool = True,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
    quiet: bool = False,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise RunFailed(f"`{' '.join(args[:4])} …` exited {result.returncode}:\n{output}")
    if not quiet and result.returncode != 0:
        say(f"(`{' '.join(args[:3])} …` exited {result.returncode})")
    return result


# --- Docker itself -----------------------------------------------------------------------------
def apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise RunFailed(f"install {', '.join(packages)} (no apt-get here)")
    if os.geteuid() != 0:
        raise RunFailed(f"install {', '.join(packages)}, or run as root so that this script can")
    say(f"installing Debian's {', '.join(packages)} …")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, timeout=900)


@contextlib.contextmanager
def docker_engine() -> Iterator[None]:
    """A Docker engine for the run: the running one, else a dockerd of our own, stopped after."""
    if engine_answers():
        say("using the running Docker engine")
        yield
        return
    if shutil.which("docker") is None or shutil.which("dockerd") is None:
        apt_install("docker.io")
    log = open(tempfile.gettempdir() + "/glisk-dockerd.log", "ab")  # noqa: SIM115 (closed below)
    say("starting dockerd (stopped at the end) …")
    process = subprocess.Popen(
        ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RunFailed(f"dockerd did not start (see {log.name})")
            time.sleep(0.5)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
        say(f"dockerd (pid {process.pid}) stopped")


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return (
        run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30, quiet=True
        ).returncode
        == 0
    )


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where it is installed, else Debian's docker-compose."""
    if run(["docker", "compose", "version"], check=False, timeout=30, quiet=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        apt_install("docker-compose")
    return ["docker-compose"]


# --- images ------------------------------------------------------------------------------------
def image_exists(name: str) -> bool:
    return run(["docker", "image", "inspect", name], check=False, timeout=30, quiet=True).returncode == 0


def build_env() -> dict[str, str]:
    # The classic builder: no buildx plugin is needed, and every step may use the host network.
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def ensure_base_images() -> list[str]:
    """The Dockerfile's and compose file's public images, pulled, or built from Debian."""
    standins = []
    for name, directory in STANDIN_BASES.items():
        if image_exists(name):
            continue
        if run(["docker", "pull", "-q", name], check=False, timeout=120, quiet=True).returncode == 0:
            say(f"pulled {name}")
            continue
        build_standin_base(name, ROOT / "deploy" / "containers" / directory)
        standins.append(name)
    return standins


def build_standin_base(name: str, context: Path) -> None:
    if not image_exists(DEBIAN_IMAGE):
        import_debian()
    say(f"{name} cannot be pulled here: building a stand-in from Debian ({context.relative_to(ROOT)}) …")
    with tempfile.TemporaryDirectory() as temporary:
        build_context = Path(temporary) / "context"
        shutil.copytree(context, build_context)
        bundle = HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None
        (build_context / "host-ca-bundle.crt").write_bytes(bundle.read_bytes() if bundle else b"")
        run(["docker", "build", "-q", "--network", "host", "-t", name, str(build_context)], env=build_env())


def import_debian() -> None:
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    say("debootstrap bookworm (minbase) for the stand-in base images …")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as temporary:
        rootfs = Path(temporary) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=ca-certificates",
                "bookworm",
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            timeout=1200,
        )
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftovers).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", DEBIAN_IMAGE], stdin=tar.stdout, capture_output=True, check=False
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RunFailed(f"docker import failed: {imported.stderr.decode()[-2000:]}")


def build_images() -> dict[str, float]:
    seconds = {}
    for image, args in (
        (APP_IMAGE, ["."]),
        (ANVIL_IMAGE, ["-f", "deploy/devnet/anvil.Dockerfile", "deploy/devnet"]),
    ):
        say(f"building {image} …")
        started = time.monotonic()
        run(["docker", "build", "-q", "--network", "host", "-t", image, *args], env=build_env())
        seconds[image] = time.monotonic() - started
    return seconds


def image_size_mb(name: str) -> float:
    size = run(["docker", "image", "inspect", "-f", "{{.Size}}", name]).stdout.strip()
    return int(size) / 1e6


# --- the stack -------------------------------------------------------------------------------
