"""`ikeguard demo`: the payment-processor case (INTERFACE.md "The demo").

Until the gateway service and data plane land, the demo states what it will show and checks that this
machine can run it (root, network namespaces, TUN); it changes nothing on the host.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

PLAN = (
    ("processor gateway", "one template connection `merchants` + a peer inventory (merchants.toml)"),
    ("merchant A, merchant B", "two merchant sites in their own network namespaces"),
    ("throwaway CA", "ECDSA P-384 device certificates valid for at most 24 h, and a CRL"),
    ("suite", "aes256gcm16-prfsha384-ecp384, ESP aes256gcm16-ecp384 (PFS)"),
    ("segmentation", "merchant B's claim of merchant A's subnet refused with ts.rejected"),
    ("evidence", "`ikeguard check` passing pci-dss-4, `ikeguard audit verify` passing"),
)


def _missing_prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces and TUN devices need CAP_NET_ADMIN)")
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun")
    if shutil.which("ip") is None:
        missing.append("iproute2 (`ip`)")
    return missing


@click.command()
def demo() -> None:
    """Run the payment-processor demo in network namespaces it creates and removes."""
    console = Console()
    missing = _missing_prerequisites()
    if missing:
        click.echo(f"ikeguard demo needs: {', '.join(missing)}", err=True)
        sys.exit(2)
    table = Table(title="ikeguard demo: the payment-processor case (what it will show)")
    table.add_column("part")
    table.add_column("what")
    for part, what in PLAN:
        table.add_row(part, what)
    console.print(table)
    console.print(
        "[yellow]The gateway service is not built yet: this run only checked the prerequisites "
        "(root, /dev/net/tun, iproute2). Nothing was created.[/yellow]"
    )
