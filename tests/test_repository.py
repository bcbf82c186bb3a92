"""The repository stands alone: nothing in it cites notes that live outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|shared/(REFERENCE|DESIGN|STYLE)|\b(REFERENCE|DESIGN|STYLE)\.md\b")


def test_no_tracked_file_cites_notes_outside_the_repository():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    citing = []
    for name in files:
        path = ROOT / name
        if name.endswith((".json", ".lock", ".png")) or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        citing += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert citing == []
