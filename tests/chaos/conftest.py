"""Chaos scenarios run the real stack and end by checking the invariants (glisk.backoffice.audit).

`make test` runs the short version; `CHAOS=full .venv/bin/pytest tests/chaos` the long one.
"""

from __future__ import annotations

import os

import pytest

from glisk.devtools.stack import Stack
from tests.e2e.conftest import test_database_url

FULL = os.environ.get("CHAOS") == "full"


def scale(short: int, full: int) -> int:
    return full if FULL else short


@pytest.fixture
def chaos_stack(tmp_path, transactional_db):
    def make(**extra_env: str) -> Stack:
        env = {
            "BATCH_REVEAL_WAIT_SECONDS": "1",
            "STAGE_LEASE_SECONDS": "10",
            "WATCHER_CONFIRMATIONS": "0",
            "LOG_LEVEL": "WARNING",
            "RETRY_BACKOFF_BASE_SECONDS": "0.2",
            "RETRY_BACKOFF_MAX_SECONDS": "2",
            **extra_env,
        }
        stack = Stack(
            var_dir=tmp_path / "var", database_url=test_database_url(), workers_per_cluster=3, extra_env=env
        )
        stack.start_chain()
        stacks.append(stack)
        return stack

    stacks: list[Stack] = []
    yield make
    for stack in stacks:
        stack.stop()
