"""`ikeguard demo`: the payment-processor case (README, quick start), run in network namespaces it creates
and removes. The work is done by `ikeguard.tools.demo`; this module checks the prerequisites and maps the
result to exit codes: 0 every step succeeded, 1 a step failed (named on stderr), 2 missing prerequisites.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the demo (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces and TUN devices need CAP_NET_ADMIN)")
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun (the userspace data plane's TUN devices)")
    if shutil.which("ip") is None:
        missing.append("iproute2 (`ip`)")
    if shutil.which("ping") is None:
        missing.append("ping (iputils-ping)")
    return missing


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help="print a JSON summary on stdout (progress goes to stderr)"
)
@click.option(
    "--keep-dir",
    is_flag=True,
    help="keep the work directory (configs, certificates, audit trail, logs) for inspection",
)
@click.option(
    "--evidence",
    "evidence_dir",
    type=click.Path(path_type=Path),
    help="also make the processor's evidence pack of the run here (a new directory or NAME.zip) and "
    "verify it",
)
def demo(as_json: bool, keep_dir: bool, evidence_dir: Path | None) -> None:
    """Run the payment-processor demo in network namespaces it creates and removes."""
    missing = missing_prerequisites()
    if missing:
        click.echo(
            f"ikeguard demo needs: {', '.join(missing)}. Run it as root on Linux (e.g. `sudo make demo`).",
            err=True,
        )
        sys.exit(2)
    from ikeguard.tools.demo.display import Display, first_line
    from ikeguard.tools.demo.runner import run_demo

    width = None if sys.stdout.isatty() else 120
    console = Console(stderr=as_json, width=width)
    if evidence_dir is not None:
        evidence_dir = evidence_dir.resolve()
        if evidence_dir.exists() and (not evidence_dir.is_dir() or any(evidence_dir.iterdir())):
            click.echo(f"ikeguard demo: --evidence {evidence_dir}: exists and is not an empty directory",
                       err=True)
            sys.exit(2)
    result = run_demo(Display(console), keep_dir=keep_dir, evidence_dir=evidence_dir)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
    if not result.ok:
        click.echo(
            f"ikeguard demo: step {result.failed_step!r} failed: {first_line(result.error or '')}", err=True
        )
        sys.exit(1)
