"""Every relative link of the README and docs/ points at a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_reach_files(page: Path) -> None:
    targets = [m["target"] for m in _LINK.finditer(page.read_text(encoding="utf-8"))]
    relative = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    missing = [t for t in relative if not (page.parent / t).exists()]
    assert missing == []
