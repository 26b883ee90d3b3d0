"""CLI verbs that talk to a running gateway over its control socket: ``sas``, ``conns``, ``peers``,
``initiate``, ``terminate``, ``rekey``, ``reload``, ``events`` (contract: docs/reference.md, "Command line").

The socket comes from ``--socket PATH`` or from ``-c FILE`` (``<gateway.state_dir>/control.sock``, the state
directory relative to the config file); with neither, from ``$IKEGUARD_CONFIG`` or
``/etc/ikeguard/gateway.toml`` (control/defaults.py), as swanctl uses charon's default socket.
``--json`` prints what the gateway answered; otherwise rich tables.
Exit codes: 0 ok, 1 the gateway refused or the command failed, 2 bad usage or no gateway to talk to.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ikeguard.control.client import ControlClient, ControlError, ControlUnavailable

SOCKET_NAME = "control.sock"
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"ikeguard: {' '.join(message.split())}", err=True)
    sys.exit(code)


def socket_from_config(config: Path) -> Path:
    """``<state_dir>/control.sock`` of the gateway configured by ``config``."""
    from ikeguard.control.cli_audit import state_dir_from
    from ikeguard.policy.errors import ConfigError, ConfigUnreadable
    from ikeguard.policy.loader import load_config

    try:
        loaded = load_config(config)
    except ConfigUnreadable as exc:
        first = exc.findings[0].message if exc.findings else str(exc)
        _fail(f"cannot read {config}: {first}", 2)
    except ConfigError:
        # a config the gateway would refuse still names its state directory (e.g. `reload` of a bad edit)
        try:
            return state_dir_from(config, None) / SOCKET_NAME
        except click.UsageError as exc:
            _fail(exc.format_message(), 2)
    return loaded.resolve(loaded.model.gateway.state_dir).resolve() / SOCKET_NAME


def _socket(config: Path | None, socket_path: Path | None) -> Path:
    ctx = click.get_current_context(silent=True)
    group = ctx.find_object(dict) if ctx is not None else None
    if group:  # `ikeguard peers -c FILE list`: options given to the group
        config = config or group.get("config")
        socket_path = socket_path or group.get("socket_path")
    if socket_path is not None:
        return socket_path
    if config is None:
        from ikeguard.control.defaults import CONFIG_ENV, default_config

        config = default_config()
        if not config.is_file():
            _fail(f"no -c FILE or --socket PATH given and no default config at {config} "
                  f"(${CONFIG_ENV} or /etc/ikeguard/gateway.toml)", 2)
    return socket_from_config(config)


def gateway_options(f: F) -> F:
    """``-c FILE`` / ``--socket PATH`` / ``--json`` on every verb."""
    f = click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")(f)
    f = click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False),
                     help="the gateway's control socket")(f)
    return click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False),
                        help="the gateway's config file (the socket is found from its state_dir; default "
                             "$IKEGUARD_CONFIG or /etc/ikeguard/gateway.toml)")(f)


def call(config: Path | None, socket_path: Path | None, cmd: str, **args: Any) -> dict[str, Any]:
    """One request; exits 2 when no gateway answers and 1 when it refuses."""
    path = _socket(config, socket_path)
    try:
        with ControlClient(path) as client:
            response = client.response(cmd, **args)
    except ControlUnavailable as exc:
        _fail(str(exc), 2)
    except ControlError as exc:
        _fail(str(exc), 1)
    if not response.get("ok"):
        _fail(str(response.get("error") or "the gateway refused the command"), 1)
    return response


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _console() -> Console:
    probe = Console()
    # on a terminal: its width; in a pipe or a file: wide enough that identities and SPIs are never split
    return Console(width=probe.width if probe.is_terminal else 220, soft_wrap=False, highlight=False)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _time(value: str | None) -> str:
    return value.replace("T", " ").removesuffix("Z")[:19] if value else "-"


# -- sas -------------------------------------------------------------------------------------------
def _drops_text(drops: Any) -> str:
    """A Child SA's drops (``{"in": {reason: n}, "out": {...}}``) on one line; empty when there are none."""
    if not isinstance(drops, dict):
        return ""
    parts = []
    for direction in ("in", "out"):
        counts = drops.get(direction) or {}
        if isinstance(counts, dict) and any(counts.values()):
            parts.append(f"{direction} " + ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())
                                                       if n))
    return f"\ndrops {'; '.join(parts)}" if parts else ""


def sas_table(sas: list[dict[str, Any]]) -> Table:
    """IKE SAs, each followed by its Child SAs (indented)."""
    table = Table(show_lines=False, header_style="bold")
    for column in ("id", "connection / child", "state", "peer / traffic selectors", "proposal", "details"):
        table.add_column(column, overflow="fold")
    for sa in sas:
        role = "initiator" if sa.get("initiator") else "responder"
        peer = f"{sa.get('remote_id') or '-'}\n{sa.get('remote_addr')}:{sa.get('remote_port')}"
        details = (f"{role}, established {_time(sa.get('established_at'))}\n"
                   f"rekey {_time(sa.get('rekey_at'))}, reauth {_time(sa.get('reauth_at'))}")
        table.add_row(str(sa.get("uniqueid")), Text(str(sa.get("name") or "-"), style="bold"),
                      str(sa.get("state")), peer, str(sa.get("proposal") or "-"), details)
        for child in sa.get("children", []):
            selectors = f"{', '.join(child.get('local_ts', []))}\n=== {', '.join(child.get('remote_ts', []))}"
            traffic = (f"SPI in {child.get('spi_in')} out {child.get('spi_out')}\n"
                       f"in {_size(int(child.get('bytes_in', 0)))} / {child.get('packets_in', 0)} pkts, "
                       f"out {_size(int(child.get('bytes_out', 0)))} / {child.get('packets_out', 0)} pkts\n"
                       f"rekey {_time(child.get('rekey_at'))}{_drops_text(child.get('drops'))}")
            label = f"  └ {child.get('name')} ({child.get('mode', 'tunnel')})"
            table.add_row(str(child.get("uniqueid")), label, str(child.get("state")), selectors,
                          str(child.get("proposal") or "-"), traffic)
    return table


@click.command("sas")
@gateway_options
@click.option("--conn", help="only this connection")
@click.option("--peer", help="only this peer identity")
@click.option("--uniqueid", type=int, help="only this IKE SA (or the IKE SA of this Child SA)")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="skip this many")
@click.option("--limit", type=click.IntRange(min=1), help="show at most this many IKE SAs")
def sas(config: Path | None, socket_path: Path | None, as_json: bool, conn: str | None, peer: str | None,
        uniqueid: int | None, offset: int, limit: int | None) -> None:
    """IKE SAs of a running gateway, each with its Child SAs."""
    response = call(config, socket_path, "sas", conn=conn, peer=peer, uniqueid=uniqueid,
                    offset=offset or None, limit=limit)
    result: list[dict[str, Any]] = response.get("result") or []
    if as_json:
        _print_json(result)
        return
    console = _console()
    if not result:
        console.print("no IKE SAs" + (" match" if (conn or peer or uniqueid is not None) else ""))
        return
    console.print(sas_table(result))
    total = int(response.get("total", len(result)))
    children = sum(len(sa.get("children", [])) for sa in result)
    shown = f"{offset + 1}-{offset + len(result)} of {total}" if total > len(result) else str(total)
    console.print(f"IKE SAs: {shown}; Child SAs: {children}")


# -- conns -----------------------------------------------------------------------------------------
@click.command("conns")
@gateway_options
def conns(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Configured connections, their peers, and whether each is up."""
    result: list[dict[str, Any]] = call(config, socket_path, "conns")["result"] or []
    if as_json:
        _print_json(result)
        return
    table = Table(header_style="bold")
    for column in ("connection", "local id", "remote id", "remote addrs", "peers", "children", "IKE SAs",
                   "status"):
        table.add_column(column, overflow="fold")
    for c in result:
        children = "\n".join(f"{ch.get('name')}: {', '.join(ch.get('local_ts', []))} === "
                             f"{', '.join(ch.get('remote_ts', []))}" for ch in c.get("children", []))
        status = str(c.get("status", ""))
        style = "green" if status == "up" else "red" if status.startswith("quarantined") else "yellow"
        peers = str(c.get("peers", 0)) if c.get("template") else "-"
        table.add_row(str(c.get("name")), str(c.get("local_id") or "-"), str(c.get("remote_id") or "%any"),
                      ", ".join(c.get("remote_addrs", [])), peers, children, str(c.get("ike_sas_up", 0)),
                      Text(status, style=style))
    _console().print(table if result else "no connections configured")


# -- peers -----------------------------------------------------------------------------------------
@click.group("peers")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False),
              help="the gateway's config file (the socket is found from its state_dir)")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False),
              help="the gateway's control socket")
@click.pass_context
def peers(ctx: click.Context, config: Path | None, socket_path: Path | None) -> None:
    """The peer inventory of a template connection, changed without a reload (audited)."""
    ctx.obj = {"config": config, "socket_path": socket_path}


@peers.command("list")
@gateway_options
@click.option("--conn", help="only this connection's inventory")
def peers_list(config: Path | None, socket_path: Path | None, as_json: bool, conn: str | None) -> None:
    """Inventory peers with their subnets, state and IKE SAs."""
    response = call(config, socket_path, "peers", action="list", conn=conn)
    result: list[dict[str, Any]] = response["result"] or []
    if as_json:
        _print_json(result)
        return
    table = Table(header_style="bold")
    for column in ("connection", "peer id", "subnets", "enabled", "IKE SAs", "ticket", "note"):
        table.add_column(column, overflow="fold")
    for p in result:
        enabled = Text("yes", style="green") if p.get("enabled") else Text("no", style="red")
        table.add_row(str(p.get("connection")), str(p.get("id")), ", ".join(p.get("remote_ts", [])), enabled,
                      str(p.get("ike_sas", 0)), str(p.get("ticket") or "-"),
                      str(p.get("disabled_reason") or ""))
    _console().print(table if result else "no inventory peers")


def _peer_change(action: str, config: Path | None, socket_path: Path | None, as_json: bool, conn: str | None,
                 peer_id: str, ticket: str | None, ts: tuple[str, ...] = ()) -> None:
    result = call(config, socket_path, "peers", action=action, conn=conn, id=peer_id, ticket=ticket,
                  ts=list(ts) or None)["result"]
    if as_json:
        _print_json(result)
        return
    where = f"connection {result.get('connection')}"
    if action == "add":
        click.echo(f"peer {result.get('id')} added to {where} ({', '.join(result.get('remote_ts', []))})")
    elif action == "disable":
        n = int(result.get("terminated", 0))
        click.echo(f"peer {result.get('id')} disabled in {where}; {n} IKE SA{'s' if n != 1 else ''} deleted; "
                   "its next attempt is refused")
    else:
        click.echo(f"peer {result.get('id')} enabled in {where}")


@peers.command("add")
@gateway_options
@click.option("--conn", help="the template connection (needed when several could take this id)")
@click.option("--ts", "ts", multiple=True, required=True, metavar="CIDR",
              help="a subnet of the peer (repeat)")
@click.option("--ticket", help="change ticket, recorded in the audit trail")
@click.argument("peer_id", metavar="ID")
def peers_add(config: Path | None, socket_path: Path | None, as_json: bool, conn: str | None,
              ts: tuple[str, ...], ticket: str | None, peer_id: str) -> None:
    """Add a peer (exact identity) bound to its own subnets."""
    _peer_change("add", config, socket_path, as_json, conn, peer_id, ticket, ts)


@peers.command("disable")
@gateway_options
@click.option("--conn", help="the template connection")
@click.option("--ticket", help="change ticket, recorded in the audit trail")
@click.argument("peer_id", metavar="ID")
def peers_disable(config: Path | None, socket_path: Path | None, as_json: bool, conn: str | None,
                  ticket: str | None, peer_id: str) -> None:
    """Disable a peer: its SAs are deleted and its next attempt is refused."""
    _peer_change("disable", config, socket_path, as_json, conn, peer_id, ticket)


@peers.command("enable")
@gateway_options
@click.option("--conn", help="the template connection")
@click.option("--ticket", help="change ticket, recorded in the audit trail")
@click.argument("peer_id", metavar="ID")
def peers_enable(config: Path | None, socket_path: Path | None, as_json: bool, conn: str | None,
                 ticket: str | None, peer_id: str) -> None:
    """Enable a disabled peer again."""
    _peer_change("enable", config, socket_path, as_json, conn, peer_id, ticket)


# -- initiate / terminate / rekey -------------------------------------------------------------------
@click.command("initiate")
@gateway_options
@click.option("--conn", required=True, help="the connection to bring up")
@click.option("--child", help="only this child (added to an established IKE SA when there is one)")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=15.0, show_default=True,
              help="seconds to wait for the tunnel")
def initiate(config: Path | None, socket_path: Path | None, as_json: bool, conn: str, child: str | None,
             timeout: float) -> None:
    """Bring a tunnel up and wait until it is established."""
    result = call(config, socket_path, "initiate", conn=conn, child=child, timeout=timeout)["result"]
    if as_json:
        _print_json(result)
        return
    ids = list(result.get("ike_uniqueids", []))
    ike, kids = (ids[0], ids[1:]) if ids else (None, [])
    child_text = f"; Child SA{'s' if len(kids) != 1 else ''} {', '.join(map(str, kids))}" if kids else ""
    how = " (already up or being set up: reused, no second IKE SA)" if result.get("reused") else ""
    click.echo(f"{conn}: IKE SA {ike} established{how}{child_text}")


def _selection_options(f: F) -> F:
    f = click.option("--child", help="only the Child SAs with this name")(f)
    f = click.option("--conn", help="every SA of this connection")(f)
    f = click.option("--peer", help="every SA of this peer identity")(f)
    return click.option("--uniqueid", type=int, help="this IKE SA (or Child SA)")(f)


def _act(cmd: str, config: Path | None, socket_path: Path | None, as_json: bool, uniqueid: int | None,
         peer: str | None, conn: str | None, child: str | None) -> None:
    if uniqueid is None and peer is None and conn is None:
        _fail(f"{cmd}: select SAs with --uniqueid N, --peer ID or --conn NAME", 2)
    result = call(config, socket_path, cmd, uniqueid=uniqueid, peer=peer, conn=conn, child=child)["result"]
    if as_json:
        _print_json(result)
        return
    key = "terminated" if cmd == "terminate" else "rekeyed"
    n = int(result.get(key, 0))
    what = "Child SA" if child else "SA"
    click.echo(f"{n} {what}{'s' if n != 1 else ''} {key}")


@click.command("terminate")
@gateway_options
@_selection_options
def terminate(config: Path | None, socket_path: Path | None, as_json: bool, uniqueid: int | None,
              peer: str | None, conn: str | None, child: str | None) -> None:
    """Delete SAs (INFORMATIONAL DELETE to the peer)."""
    _act("terminate", config, socket_path, as_json, uniqueid, peer, conn, child)


def _rekey_line(sa: dict[str, Any]) -> str:
    """One rekeyed SA: which SA (type, unique id), its SPIs before and after."""
    status = str(sa.get("status", ""))
    if sa.get("type") == "ike":
        head = f"IKE SA {sa.get('old_uniqueid')} ({sa.get('connection')})"
        old = f"SPIs {sa.get('old_spi_i')}_i {sa.get('old_spi_r')}_r"
        new = f"IKE SA {sa.get('new_uniqueid')} SPIs {sa.get('new_spi_i')}_i {sa.get('new_spi_r')}_r"
    else:
        head = (f"Child SA {sa.get('old_uniqueid')} {sa.get('child')} ({sa.get('connection')}, "
                f"IKE SA {sa.get('ike_uniqueid')})")
        old = f"SPIs in {sa.get('old_spi_in')} out {sa.get('old_spi_out')}"
        new = (f"Child SA {sa.get('new_uniqueid')} SPIs in {sa.get('new_spi_in')} "
               f"out {sa.get('new_spi_out')}")
    if status == "rekeyed":
        return f"{head} rekeyed: {old} -> {new}"
    if status == "failed":
        return f"{head} rekey failed ({old} stay; see the gateway log and `ikeguard events`)"
    return f"{head} rekey started, not finished within --timeout ({old})"


@click.command("rekey")
@gateway_options
@click.option("--uniqueid", type=int, help="this IKE SA (or Child SA)")
@click.option("--peer", help="every SA of this peer identity")
@click.option("--conn", help="every SA of this connection")
@click.option("--child", help="rekey the Child SAs with this name (as swanctl --rekey --child)")
@click.option("--ike", "ike", is_flag=True,
              help="rekey the IKE SA (the default unless --child is given or --uniqueid names a Child SA)")
@click.option("--timeout", type=click.FloatRange(min=0, max=120), default=10.0, show_default=True,
              help="seconds to wait for the new SAs (0: report the rekeys as started)")
def rekey(config: Path | None, socket_path: Path | None, as_json: bool, uniqueid: int | None,
          peer: str | None, conn: str | None, child: str | None, ike: bool, timeout: float) -> None:
    """Rekey SAs now (CREATE_CHILD_SA) and say which: IKE or Child SA, unique ids, SPIs before and after.
    Exit 1 when a rekey failed or did not finish in time."""
    if uniqueid is None and peer is None and conn is None:
        _fail("rekey: select SAs with --uniqueid N, --peer ID or --conn NAME", 2)
    result = call(config, socket_path, "rekey", uniqueid=uniqueid, peer=peer, conn=conn, child=child,
                  ike=ike or None, timeout=timeout)["result"]
    sas: list[dict[str, Any]] = result.get("sas") or []
    if as_json:
        _print_json(result)
    else:
        for sa in sas:
            click.echo(_rekey_line(sa))
    if timeout and any(sa.get("status") != "rekeyed" for sa in sas):
        sys.exit(1)


# -- reload / events ------------------------------------------------------------------------------
@click.command("reload")
@gateway_options
@click.option("--wait", is_flag=True, help="return only after changed tunnels were re-established (paced)")
def reload(config: Path | None, socket_path: Path | None, as_json: bool, wait: bool) -> None:
    """Re-read the config; unchanged tunnels stay up (a renewed certificate file is not a change)."""
    result = call(config, socket_path, "reload", wait=wait or None)["result"]
    if as_json:
        _print_json(result)
        return

    def names(key: str) -> str:
        return ", ".join(result.get(key) or []) or "none"

    click.echo(f"configuration reloaded: kept {names('kept')}; changed {names('changed')}; "
               f"added {names('added')}; removed {names('removed')}")
    for name, change in (result.get("changes") or {}).items():
        keys = ", ".join(change.get("keys") or [])
        if change.get("applies") == "next rekey":
            click.echo(f"{name}: {keys} apply at the next rekey; its SAs stay up untouched")
        else:
            click.echo(f"{name}: re-established ({change.get('how', '')}): {change.get('why', keys)}")
    if result.get("to_restart") or result.get("starting"):
        click.echo(f"re-establishing at a paced rate: {result.get('to_restart', 0)} SA(s) of changed "
                   f"connections; starting {names('starting')}")
    if result.get("peers_closed"):
        click.echo(f"SAs deleted for inventory changes: {names('peers_closed')}")
    if result.get("restart_needed"):
        click.echo(f"needs a restart to apply: {names('restart_needed')}")


def event_line(event: dict[str, Any]) -> str:
    """One audit event as a text line: time, event, outcome, connection, peer or admin, then the reason and
    the SAs it concerns (IKE SPIs of ``ike.*`` records, old -> new inbound SPI of ``child.rekeyed``)."""
    who = event.get("remote_id") or event.get("remote_addr") or event.get("admin") or ""
    head = " ".join(str(x) for x in (event.get("time", ""), event.get("event"), event.get("outcome"),
                                     event.get("connection", ""), who) if x)
    details = event.get("details") or {}
    parts = [str(event.get("reason") or "")]
    if isinstance(details, dict):
        if details.get("child"):
            parts.append(f"child {details['child']}")
        if "old_spi_in" in details or "new_spi_in" in details:
            parts.append(f"SPI in {details.get('old_spi_in', '?')} -> {details.get('new_spi_in', '?')}")
        if "spi_i" in details:
            ike = event.get("ike_uniqueid")
            label = f"IKE SA {ike} " if ike is not None else ""
            parts.append(f"{label}SPIs {details['spi_i']}_i {details.get('spi_r', '')}_r")
        if "old_uniqueid" in details:
            parts.append(f"replaces IKE SA {details['old_uniqueid']}")
    tail = "; ".join(p for p in parts if p)
    return f"{head}: {tail}" if tail else head


@click.command("events")
@gateway_options
def events(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Follow the running gateway's audit events (Ctrl-C to stop)."""
    path = _socket(config, socket_path)
    try:
        with ControlClient(path) as client:
            for event in client.events():
                if as_json:
                    click.echo(json.dumps(event, separators=(",", ":")))
                else:
                    click.echo(event_line(event))
    except KeyboardInterrupt:
        return
    except ControlUnavailable as exc:
        _fail(str(exc), 2)
    except ControlError as exc:
        _fail(str(exc), 1)


COMMANDS = (sas, conns, peers, initiate, terminate, rekey, reload, events)
