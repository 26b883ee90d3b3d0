"""Reading what the gateways and tools report, for the demo's checks: the real CLI's output, `sas` entries,
ping summaries and the SIEM's JSON lines. Small pure helpers; the steps that use them live in runner.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ikeguard.tools.demo.scenario import CHILD


def run_cli(
    *args: str, columns: int | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run the real `ikeguard` CLI (the console script next to this interpreter) and capture its output.

    With `columns`, its tables are drawn for that width with colours (rich: TTY_COMPATIBLE + COLUMNS), so they
    fit in the demo's panels."""
    script = Path(sys.executable).parent / "ikeguard"
    argv = [str(script), *args] if script.exists() else [sys.executable, "-m", "ikeguard", *args]
    env = dict(os.environ)
    if columns is not None:
        env.update({"TTY_COMPATIBLE": "1", "COLUMNS": str(columns)})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)


PING_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")  # iputils ping's summary line


def readline_within(stream: Any, timeout: float) -> str:
    """One line from a child's stdout, or '' after `timeout` s."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (none while it does not exist; a partial last line is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def established(sa: dict[str, Any]) -> bool:
    """An IKE SA entry of `sas --json` that is established."""
    return str(sa.get("state", "")).upper() == "ESTABLISHED"


def installed_child(sa: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The installed Child SA called `name` of an IKE SA entry, if any."""
    for child in sa.get("children", []):
        if child.get("name") == name and str(child.get("state", "")).upper() == "INSTALLED":
            return dict(child)
    return None


def child_packets(sas: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Packets received per remote identity over its card-data children."""
    out: dict[str, int] = {}
    for sa in sas:
        for child in sa.get("children", []):
            if child.get("name") == CHILD:
                rid = str(sa.get("remote_id"))
                out[rid] = out.get(rid, 0) + int(child.get("packets_in", 0))
    return out


def sa_evidence(sa: dict[str, Any]) -> dict[str, Any]:
    """What the summary keeps of an IKE SA: peer, proposals, selectors and SPIs of its card-data child."""
    child = installed_child(sa, CHILD) or {}
    return {
        "remote_id": sa.get("remote_id"),
        "remote_addr": sa.get("remote_addr"),
        "state": sa.get("state"),
        "proposal": sa.get("proposal"),
        "child": child.get("name"),
        "child_proposal": child.get("proposal"),
        "local_ts": child.get("local_ts"),
        "remote_ts": child.get("remote_ts"),
        "spi_in": child.get("spi_in"),
        "spi_out": child.get("spi_out"),
    }
