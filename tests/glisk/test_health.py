from __future__ import annotations

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


def test_health_is_503_without_driver_text_when_the_database_is_unreachable():
    """A real process whose DATABASE_URL points at a closed port on this machine."""
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/health');"
        "print(json.dumps({'code': r.status_code, 'body': r.content.decode()}))"
    )
    env = dict(os.environ)
    env.update(
        {
            "APP_ENV": "test",
            "DJANGO_SETTINGS_MODULE": "glisk.settings",
            "DATABASE_URL": "postgresql://glisk:pa55w0rd-secret@127.0.0.1:9/glisk",
            "LOG_LEVEL": "ERROR",
            "ALLOWED_HOSTS": "testserver",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 503
    body = json.loads(outcome["body"])
    assert body["status"] == "unhealthy"
    assert set(body["error"]) == {"type", "message"}
    for leak in ("pa55w0rd", "127.0.0.1", "glisk:", "connection", "psycopg"):
        assert leak not in outcome["body"]


@pytest.mark.django_db
def test_health_only_answers_get(client):
    assert client.post("/health").status_code == 405
