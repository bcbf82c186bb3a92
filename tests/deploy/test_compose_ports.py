"""docker-compose.yml publishes nothing beyond this machine unless a variable says so."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = re.compile(r"^(127\.0\.0\.1|\$\{PUBLISH_ADDRESS:-127\.0\.0\.1\}):")


def test_every_published_port_is_bound_to_loopback_by_default():
    """Found in review: gunicorn was published on every interface, so with NUM_PROXIES=1 a client
    that reached port 8000 directly wrote its own X-Forwarded-For and got a fresh throttle
    identity per request."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = {
        name: [str(port) for port in service.get("ports", [])]
        for name, service in compose["services"].items()
    }
    assert published["web"] and published["prometheus"]
    loose = [
        f"{name}: {port}" for name, ports in published.items() for port in ports if not LOOPBACK.match(port)
    ]
    assert loose == []
