"""``ikeguard run -c FILE [--profile NAME [--override-profile]]``: the gateway in the foreground (systemd
``Type=notify``).

``--profile`` naming another profile than the file's ``[gateway] profile`` is refused unless
``--override-profile`` says the operator means it: a profile silently replaced on the command line would
run a gateway under rules its configuration (and its assessor) never saw. The override is recorded in the
``config.loaded`` audit record (``profile_in_file``, ``profile_override``).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when the configuration is refused (the findings, as
``ikeguard check`` prints them) or the gateway cannot start, 2 when the file cannot be read or ``--profile``
differs from the file's profile without ``--override-profile``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import click

from ikeguard.policy.model import GatewaySection


def file_profile(config_path: str) -> str | None:
    """The profile the configuration file names (its default when it names none); None when the file
    cannot be read as TOML (``run`` then reports that as it always does)."""
    try:
        data = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    gateway = data.get("gateway", {})
    named = gateway.get("profile") if isinstance(gateway, dict) else None
    default = GatewaySection.model_fields["profile"].default
    return named if isinstance(named, str) else str(default)


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="configuration file")
@click.option("--profile", "profile_name",
              help="enforce this profile instead of [gateway] profile (needs --override-profile when they "
                   "differ)")
@click.option("--override-profile", is_flag=True,
              help="accept a --profile that differs from the file's profile (audited in config.loaded)")
def run(config_path: str, profile_name: str | None, override_profile: bool) -> None:
    """Run the gateway in the foreground until SIGTERM."""
    if profile_name is not None:
        named = file_profile(config_path)
        if named is not None and named != profile_name and not override_profile:
            click.echo(f"ikeguard run: --profile {profile_name} differs from the profile {named!r} that "
                       f"{config_path} names; refused (add --override-profile to run under {profile_name}, "
                       "recorded in the audit trail)", err=True)
            sys.exit(2)
    from ikeguard.control.workers_run import run_workers
    from ikeguard.service.runner import run_gateway

    sys.exit(run_gateway(config_path, profile_override=profile_name, workers_main=run_workers))
