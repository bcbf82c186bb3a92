from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Stored images go to a per-test directory, never the developer's var/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IPFS_LOCAL_DIR = tmp_path / "ipfs"
