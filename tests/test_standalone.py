"""The repository stands alone: nothing a user reads or runs refers to material outside it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

OUTSIDE = re.compile(r"\.\./shared|\bshared/(INTERFACE|ARCHITECTURE|reference|examples|vectors)\b")
TEXT = {".py", ".md", ".toml", ".sh", ".txt", ".service", ".json", ".cfg", ""}


def _files() -> list[Path]:
    roots = [REPO / d for d in ("src", "tests", "docs", "examples", "bench", "scripts", "packaging")]
    files = [REPO / "README.md", REPO / "Makefile", REPO / "pyproject.toml"]
    for root in roots:
        files += [p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT
                  and not {"__pycache__", "pki", ".egg-info"} & set(p.parts)
                  and not any(part.endswith(".egg-info") for part in p.parts)]
    return files


def test_no_file_refers_to_the_shared_folder_beside_the_checkout() -> None:
    me = Path(__file__).resolve()
    offenders = [str(p.relative_to(REPO)) for p in _files()
                 if p.resolve() != me and OUTSIDE.search(p.read_text(errors="replace"))]
    assert offenders == []
