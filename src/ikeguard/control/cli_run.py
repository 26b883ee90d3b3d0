"""``ikeguard run -c FILE [--profile NAME]``: the gateway in the foreground (systemd ``Type=notify``).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when the configuration is refused (the findings, as
``ikeguard check`` prints them) or the gateway cannot start, 2 when the file cannot be read.
"""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="configuration file")
@click.option("--profile", "profile_name", help="enforce this profile instead of [gateway] profile")
def run(config_path: str, profile_name: str | None) -> None:
    """Run the gateway in the foreground until SIGTERM."""
    from ikeguard.service.runner import run_gateway

    sys.exit(run_gateway(config_path, profile_override=profile_name))
