from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_health_is_200_when_the_database_answers(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


@pytest.mark.django_db
def test_health_answers_a_check_by_address_that_allowed_hosts_does_not_list(client, settings):
    """Found by running the image: a container's health check asks 127.0.0.1:8000, which a
    production ALLOWED_HOSTS does not list; every other path still refuses that host."""
    settings.ALLOWED_HOSTS = ["api.glisk.example"]
    assert client.get("/health", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/health", HTTP_HOST="10.0.0.7").json() == {"status": "healthy"}
    assert client.get("/api/docs/", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert client.get("/health?x=1", HTTP_HOST="api.glisk.example").status_code == 200


def request_with_the_database_down(method: str, path: str, *, port: int = 9, **kwargs: object) -> dict:
    """A real process whose DATABASE_URL points at a closed port on this machine (or `port`)."""
    script = (
        "import django, json, sys; django.setup();"
        "from django.test import Client;"
        "method, path, kwargs = json.loads(sys.argv[1]);"
        "r = getattr(Client(), method)(path, **kwargs);"
        "print(json.dumps({'code': r.status_code, 'body': r.content.decode(), 'headers': dict(r.headers)}))"
    )
    env = dict(os.environ)
    env.update(
        {
            "APP_ENV": "test",
            "DJANGO_SETTINGS_MODULE": "glisk.settings",
            "DATABASE_URL": f"postgresql://glisk:pa55w0rd-secret@127.0.0.1:{port}/glisk",
            "LOG_LEVEL": "ERROR",
            "ALLOWED_HOSTS": "testserver",
            "ALCHEMY_WEBHOOK_SECRET": "whsec_down",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps([method, path, kwargs])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    for leak in ("pa55w0rd", "127.0.0.1", "glisk:", "connection", "psycopg"):
        assert leak not in outcome["body"]
    return outcome


def test_health_is_503_without_driver_text_when_the_database_is_unreachable():
    outcome = request_with_the_database_down("get", "/health")
    assert outcome["code"] == 503
    body = json.loads(outcome["body"])
    assert body["status"] == "unhealthy"
    assert set(body["error"]) == {"type", "message"}


def test_a_webhook_while_the_database_is_down_is_503_with_retry_after():
    """Alchemy retries non-2xx answers: a restarting database must not look like our bug (500)."""
    body = json.dumps({"webhookId": "wh_1", "id": "whevt_1", "event": {"data": {"block": {"logs": []}}}})
    signature = hmac.new(b"whsec_down", body.encode(), hashlib.sha256).hexdigest()
    outcome = request_with_the_database_down(
        "post",
        "/webhooks/alchemy",
        data=body,
        content_type="application/json",
        HTTP_X_ALCHEMY_SIGNATURE=signature,
    )
    assert outcome["code"] == 503
    assert outcome["headers"]["Retry-After"] == "5"
    assert json.loads(outcome["body"])["error"]["type"] == "database_unavailable"


@pytest.mark.django_db
def test_health_only_answers_get(client):
    assert client.post("/health").status_code == 405


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_a_token_list_poll_while_the_database_is_down_is_503_with_retry_after(accept):
    """The frontend's polls take the token list's direct path: it answers like every API view."""
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    outcome = request_with_the_database_down("get", f"/api/authors/0x{'ab' * 20}/tokens", **extra)
    assert outcome["code"] == 503
    assert outcome["headers"]["Retry-After"] == "5"
    assert "database_unavailable" in outcome["body"]


def test_a_token_list_poll_tries_an_unreachable_database_once():
    """A poll on the direct path waits for as many connection attempts as one through DRF, not
    twice as many: a server that drops every connection counts them."""
    import socket
    import threading

    attempts: list[int] = []
    server = socket.create_server(("127.0.0.1", 0))

    def drop_connections() -> None:
        while True:
            try:
                accepted, _ = server.accept()
            except OSError:
                return
            attempts.append(1)
            accepted.close()

    threading.Thread(target=drop_connections, daemon=True).start()
    counted = {}
    try:
        for accept in ("application/*", "*/*"):  # DRF's path, then the direct one
            before = len(attempts)
            outcome = request_with_the_database_down(
                "get", f"/api/authors/0x{'ab' * 20}/tokens", port=server.getsockname()[1], HTTP_ACCEPT=accept
            )
            assert outcome["code"] == 503 and outcome["headers"]["Retry-After"] == "5"
            counted[accept] = len(attempts) - before
    finally:
        server.close()
    assert counted["*/*"] == counted["application/*"] >= 1
