from __future__ import annotations

import pytest
from django.db import connection

from glisk.devtools.stack import Stack


def test_database_url() -> str:
    """The pytest database, as a URL the stack's processes can use."""
    s = connection.settings_dict
    host = s.get("OPTIONS", {}).get("host") or s.get("HOST") or ""
    if host.startswith("/"):
        return f"postgresql://{s['USER']}:@/{s['NAME']}?host={host}"
    return f"postgresql://{s['USER']}:{s['PASSWORD']}@{host}:{s.get('PORT') or 5432}/{s['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def stack(tmp_path, transactional_db):
    with Stack(
        var_dir=tmp_path / "var",
        database_url=test_database_url(),
        workers_per_cluster=3,
        extra_env={
            "BATCH_REVEAL_WAIT_SECONDS": "1",
            "STAGE_LEASE_SECONDS": "15",
            "WATCHER_CONFIRMATIONS": "0",
            "LOG_LEVEL": "WARNING",
        },
    ) as s:
        s.start_chain()
        yield s
