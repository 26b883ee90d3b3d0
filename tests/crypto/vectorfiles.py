"""Loading the third-party vector files in tests/vectors for the crypto KATs (read-only; provenance in
tests/vectors/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import VECTORS


def load(relative: str) -> Any:
    """Parse one JSON vector file."""
    return json.loads((VECTORS / relative).read_text())


def hx(text: str) -> bytes:
    """Hex (spaces allowed, as in the RFC transcriptions) to bytes."""
    return bytes.fromhex(text.replace(" ", ""))


def vector_path(relative: str) -> Path:
    """Absolute path of a vector file."""
    return VECTORS / relative
