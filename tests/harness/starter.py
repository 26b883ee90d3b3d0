"""strongSwan's legacy ``starter`` as an ipsec.conf(5) syntax judge: ``starter --conftest --conf FILE`` parses
the file as charon's starter would load it and prints every parse error (it exits 0 either way, so callers
read the output). Needs the ``strongswan-starter`` package; missing under CI=true it fails the test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

STARTER = Path("/usr/lib/ipsec/starter")


def starter_conftest(conf: Path) -> str:
    """strongSwan's starter parsing ``conf`` (``--conftest``): its output, which names every parse error."""
    if not STARTER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("strongSwan's starter is not installed (strongswan-starter)")
        pytest.skip("strongSwan's starter is not installed (strongswan-starter)")
    done = subprocess.run([str(STARTER), "--conftest", "--conf", str(conf)], capture_output=True, text=True,
                          timeout=30, check=False)
    return done.stdout + done.stderr
