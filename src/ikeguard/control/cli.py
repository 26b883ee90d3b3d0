"""The `ikeguard` command line (contract: docs/reference.md, "Command line").

Exit codes: 0 ok, 1 a finding or failed check, 2 bad usage or unreadable input.
Each command group lives in its own module and registers itself here.
"""

from __future__ import annotations

import click

from ikeguard import __version__
from ikeguard.control.cli_audit import audit
from ikeguard.control.cli_demo import demo
from ikeguard.control.cli_evidence import evidence
from ikeguard.control.cli_gateway import conns, events, initiate, peers, rekey, reload, sas, terminate
from ikeguard.control.cli_ha import ha
from ikeguard.control.cli_import import import_command
from ikeguard.control.cli_pki import pki
from ikeguard.control.cli_policy import check, profiles
from ikeguard.control.cli_profile import client_profile
from ikeguard.control.cli_run import run
from ikeguard.control.cli_scan import scan_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ikeguard")
def main() -> None:
    """ikeguard: a compliance-first IKEv2/IPsec gateway."""


main.add_command(demo)
main.add_command(check)
main.add_command(profiles)
main.add_command(audit)
main.add_command(evidence)
main.add_command(run)
main.add_command(sas)
main.add_command(conns)
main.add_command(ha)
main.add_command(peers)
main.add_command(initiate)
main.add_command(terminate)
main.add_command(rekey)
main.add_command(reload)
main.add_command(events)
main.add_command(scan_command)
main.add_command(import_command)
main.add_command(client_profile)
main.add_command(pki)
