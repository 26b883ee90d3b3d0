"""``ikeguard client-profile``: a ready remote-access client configuration for one user
(docs/remote-access.md; formats in policy/client_profiles.py).

The configuration is loaded and enforced as ``run`` does, so a connection its profile refuses (or
quarantines) gets no client profile: exit 1 with the findings. Exit 2: the file cannot be read, or the
connection or group does not exist.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click

from ikeguard.control.defaults import default_config
from ikeguard.policy.client_profiles import ProfileError, Target, mobileconfig, powershell, swanctl
from ikeguard.policy.enforce import load_and_enforce
from ikeguard.policy.errors import ConfigError, ConfigUnreadable


@click.command("client-profile")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="gateway configuration (default: $IKEGUARD_CONFIG or /etc/ikeguard/gateway.toml)")
@click.option("--conn", "conn_name", required=True, help="the remote-access connection")
@click.option("--user", required=True, help="the user's EAP identity")
@click.option("--format", "fmt", type=click.Choice(["mobileconfig", "powershell", "swanctl"]), required=True,
              help="Apple .mobileconfig, Windows PowerShell, or strongSwan swanctl.conf")
@click.option("--server", help="address or DNS name clients connect to (default: the connection's first "
              "local_addrs)")
@click.option("--group", help="the user's RADIUS group: its local_ts become the client's remote selectors")
@click.option("--eap", type=click.Choice(["ttls", "tls", "mschapv2", "peap"]), default="ttls",
              show_default=True, help="EAP method of the swanctl profile")
@click.option("--device-id", help="the device certificate's identity (default: its subject)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="file to write (mode 0600), - for standard output")
def client_profile(config_path: str | None, conn_name: str, user: str, fmt: str, server: str | None,
                   group: str | None, eap: str, device_id: str | None, output: str) -> None:
    """Write a client configuration for USER of a remote-access connection."""
    path = Path(config_path) if config_path else default_config()
    try:
        config, _ = load_and_enforce(path, now=dt.datetime.now(dt.UTC))
    except ConfigUnreadable as exc:
        click.echo(f"ikeguard client-profile: {exc.findings[0].message}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        for f in exc.findings:
            click.echo(f"ikeguard client-profile: {f.rule}: {f.location()}: {f.message}", err=True)
        sys.exit(1)
    conn = config.model.connections.get(conn_name)
    if conn is None or conn_name not in config.enabled_connections():
        why = "no such connection" if conn is None else "refused by its profile (quarantined)"
        click.echo(f"ikeguard client-profile: connection {conn_name}: {why}", err=True)
        sys.exit(2 if conn is None else 1)
    if group is not None and group not in conn.groups:
        click.echo(f"ikeguard client-profile: connection {conn_name} has no group {group!r}", err=True)
        sys.exit(2)
    if group is not None:
        remote_ts = tuple(conn.groups[group].local_ts)
    else:
        remote_ts = tuple(ts for child in conn.children.values() for ts in child.local_ts) or ("0.0.0.0/0",)
    address = server or (conn.local_addrs[0] if conn.local_addrs else None)
    if address is None:
        click.echo("ikeguard client-profile: the connection has no local_addrs: give --server", err=True)
        sys.exit(2)
    target = Target(conn_name, conn, user, address, conn.local.id or address, remote_ts, eap, device_id)
    try:
        if fmt == "mobileconfig":
            data = mobileconfig(target)
        else:
            data = (powershell(target) if fmt == "powershell" else swanctl(target)).encode()
    except ProfileError as exc:
        click.echo(f"ikeguard client-profile: {exc}", err=True)
        sys.exit(1)
    if output == "-":
        sys.stdout.buffer.write(data)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
