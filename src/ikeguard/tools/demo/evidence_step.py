"""`ikeguard demo --evidence DIR`: the auditor's pack of the processor gateway after the run
(docs/evidence.md), made and verified with the real CLI (`ikeguard evidence`, `evidence verify --key`)."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

from ikeguard.audit.store import rfc3339
from ikeguard.tools.demo.probes import run_cli


class EvidenceFailed(RuntimeError):
    """The pack could not be made or does not verify (message says which command and why)."""


def make_pack(config: Path, out: Path, since: dt.datetime) -> tuple[dict[str, Any], str]:
    """Make the pack of ``config``'s trail from ``since`` to now into ``out`` and verify it offline; returns
    what the demo shows (suites, SAs, files) and the commands' output."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    made = run_cli("evidence", "-c", str(config), "--from", rfc3339(since - dt.timedelta(minutes=1)),
                   "--to", rfc3339(until), "-o", str(out), timeout=300)
    shown = f"$ ikeguard evidence -c {config} --from ... --to ... -o {out}\n{made.stdout}{made.stderr}"
    if made.returncode != 0:
        raise EvidenceFailed(f"`ikeguard evidence` exited {made.returncode}: "
                             f"{(made.stderr or made.stdout)[-300:]}")
    state = tomllib.loads(config.read_text()).get("gateway", {}).get("state_dir", "state")
    key = config.parent / str(state) / "audit-verification.key"
    checked = run_cli("evidence", "verify", str(out), "--key", str(key), timeout=120)
    shown += f"$ ikeguard evidence verify {out} --key {key}\n{checked.stdout}{checked.stderr}"
    if checked.returncode != 0:
        raise EvidenceFailed(f"`ikeguard evidence verify` exited {checked.returncode}: "
                             f"{checked.stdout[-300:]}")
    crypto = json.loads((out / "inventory" / "crypto.json").read_text()) if out.is_dir() else {}
    summary = json.loads((out / "connections" / "summary.json").read_text()) if out.is_dir() else {}
    return {"pack": str(out), "negotiated_suites": crypto.get("negotiated_suites", []),
            "ike_sas": summary.get("ike_sas"), "child_sas": summary.get("child_sas"),
            "files": sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
            if out.is_dir() else [out.name]}, shown
