"""``ikeguard ha status`` and ``ikeguard ha role STATE`` (docs/ha.md): the role keepalived gives this node
(its ``notify`` script runs ``ikeguard ha role master|backup|fault``) and the replication state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ikeguard.control.cli_gateway import _print_json, call, gateway_options


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    click.echo(f"node {result.get('node')}: {result.get('role')}")
    last = result.get("last_sync")
    click.echo(f"last replication: {'never' if last is None else last} ({result.get('synced_sas', 0)} SAs)"
               + (f"; failing: {result['sync_error']}" if result.get("sync_error") else ""))
    lease = result.get("lease")
    if lease is not None:
        if lease.get("held"):
            click.echo(f"lease: held (fencing token {lease.get('token')}, {lease.get('remaining', 0):.1f} s "
                       "certain)")
        else:
            holder = f", held by {lease['holder']}" if lease.get("holder") else ""
            error = f"; {lease['error']}" if lease.get("error") else ""
            click.echo(f"lease: not held{holder}{error}")
    if result.get("fenced"):
        click.echo(f"fenced: {result['fenced']}")
    beat = result.get("heartbeat")
    if beat:
        heard = beat.get("heard")
        click.echo(f"heartbeat to {beat.get('peer')}: " + ("never heard" if heard is None else
                   f"{beat.get('peer_node')} ({beat.get('peer_role')}) heard {heard:.1f} s ago")
                   + (f"; standby holds off {beat.get('covered', 0):.1f} s" if beat.get("covered") else "")
                   + ("; the active is alive: not taking over" if beat.get("hears_active") else ""))
    if result.get("serving_on_peer"):
        click.echo("serving without etcd: the standby confirms it will not take over (ha.sync_failed)")
    if result.get("healthy") is False:
        click.echo("unhealthy: made MASTER but cannot hold the lease (keepalived's track script fails)")
    takeover = result.get("last_takeover")
    if takeover:
        if takeover.get("refused"):
            click.echo(f"last takeover refused: {takeover['refused']}")
        else:
            age = takeover.get("state_age") or 0.0
            click.echo(f"last takeover: {takeover.get('restored')} SAs restored in "
                       f"{takeover.get('seconds', 0):.3f} s (state {age:.1f} s old)")


@click.group("ha")
def ha() -> None:
    """High availability: this node's role and replication (docs/ha.md)."""


@ha.command("status")
@gateway_options
def status(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Role, last replication to etcd, last takeover."""
    _show(call(config, socket_path, "ha", action="status")["result"], as_json)


@ha.command("role")
@click.argument("state", type=click.Choice(["master", "backup", "fault", "stop", "active", "standby"],
                                           case_sensitive=False))
@gateway_options
def role(state: str, config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Set the role as keepalived's notify script says (MASTER takes the replicated SAs over)."""
    result = call(config, socket_path, "ha", action="role", role=state)["result"]
    _show(result, as_json)
    if state.lower() in ("master", "active") and result.get("role") != "active":
        raise SystemExit(1)
