from __future__ import annotations

import json
import logging

import pytest

from glisk.logging import JsonFormatter, KeyValueFormatter, SecretMaskingFilter, mask_secrets


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("rpc=https://base-sepolia.g.alchemy.com/v2/AbCdEf123456 failed", "AbCdEf123456"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nature", "eyJhbGciOiJIUzI1NiJ9"),
        ("token r8_0123456789abcdefABCDEF used", "r8_0123456789abcdefABCDEF"),
        ("postgresql://glisk:hunter2@db:5432/glisk", "hunter2"),
        ("GET https://node.example/rpc?apikey=zzz999&x=1", "zzz999"),
        ("private_key=0x" + "ab" * 32, "ab" * 32),
    ],
)
def test_secret_shapes_are_masked(text, secret):
    masked = mask_secrets(text)
    assert secret not in masked
    assert "***" in masked


def test_configured_secrets_are_masked_even_without_a_known_shape(settings):
    settings.GLISK_SECRET_VALUES = ["plain-webhook-signing-key"]
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "secret is %s", ("plain-webhook-signing-key",), None
    )
    record.__dict__["detail"] = "again plain-webhook-signing-key"
    SecretMaskingFilter().filter(record)
    assert "plain-webhook-signing-key" not in record.getMessage()
    assert "plain-webhook-signing-key" not in record.__dict__["detail"]


def test_exception_text_is_masked(settings):
    settings.GLISK_SECRET_VALUES = ["kkkk-secret-kkkk"]
    try:
        raise RuntimeError("connect failed with key kkkk-secret-kkkk")
    except RuntimeError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    SecretMaskingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "kkkk-secret-kkkk" not in line
    assert "RuntimeError" in line


def test_hashes_and_ids_are_not_masked():
    tx = "0x" + "cd" * 32
    assert mask_secrets(f"reveal.sent tx_hash={tx} token_id=5") == f"reveal.sent tx_hash={tx} token_id=5"


def test_json_formatter_emits_event_and_fields():
    record = logging.LogRecord("glisk", logging.INFO, __file__, 1, "token.claimed", None, None)
    record.token_id = 7
    payload = json.loads(JsonFormatter().format(record))
    assert payload["event"] == "token.claimed"
    assert payload["token_id"] == 7
    assert payload["level"] == "info"


def test_key_value_formatter():
    record = logging.LogRecord("glisk", logging.INFO, __file__, 1, "token.claimed", None, None)
    record.worker = "host 1"
    line = KeyValueFormatter().format(record)
    assert line.endswith('token.claimed worker="host 1"')


def test_objects_in_extra_fields_are_masked_and_a_request_keeps_no_query_string(settings, rf):
    """Found in review: Django's request logger passes the request object; printed with str() it
    carried the query string (OAuth codes, tokens, passwords) into the JSON log unmasked."""
    settings.GLISK_SECRET_VALUES = ["configured-secret-1234"]
    request = rf.get("/api/authors/x/callback?code=SECRET404&access_token=SECRETAT&password=hunter2")
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/x",), None)
    record.__dict__.update(
        request=request,
        status_code=404,
        token_ids=[1, 2, 3],
        detail={"url": "postgresql://glisk:hunter2@db/glisk", "why": "configured-secret-1234"},
        other=RuntimeError("key configured-secret-1234"),
    )
    SecretMaskingFilter().filter(record)
    line = JsonFormatter().format(record)
    payload = json.loads(line)
    for secret in ("SECRET404", "SECRETAT", "hunter2", "configured-secret-1234"):
        assert secret not in line
    assert payload["request"] == "GET /api/authors/x/callback"
    assert payload["status_code"] == 404
    assert payload["token_ids"] == [1, 2, 3]
    assert payload["detail"]["why"] == "***"
