"""`ikeguard scan HOST[:PORT]`: the IKEv2 crypto-negotiation scanner (docs/scan.md).

Exit codes: 0 no finding, 1 findings, 2 could not scan (no IKEv2 answer, a partial scan without findings,
bad usage: unknown profile, unreadable policy file, unresolvable host).
"""

from __future__ import annotations

import json
import re
import socket
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ikeguard.policy.profile import ProfileNotFound, load_profile
from ikeguard.scan import PolicyFileError, ScanOptions, ScanReport, judge, load_policy, scan

_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}
_STATUS_STYLE = {"accepted": "bold", "refused": "dim", "not_verified": "magenta"}
_CLASS_TAG = {"ENCR": "enc", "PRF": "prf", "INTEG": "int", "KE": "kex", "ADDKE": "pq"}


def parse_target(target: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address -> (host, port); default port 500."""
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", target)
    if m:
        return m.group(1), int(m.group(2) or 500)
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        if not port.isdigit():
            raise click.BadParameter(f"bad port in {target!r}")
        return host, int(port)
    return target, 500


def parse_rate(text: str) -> float:
    """'10', '10/s' -> 10.0 probes per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"rate must look like 10/s, got {text!r}")
    return float(m.group(1))


def _resolve(host: str, port: int) -> tuple[str, int]:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return str(info[0][4][0]), port


def _print(console: Console, report: ScanReport) -> None:
    r = report.result
    console.print(f"[bold]ikeguard scan[/] {escape(r.host)} ({r.address[0]} port {r.address[1]}), "
                  f"profile {report.profile.name}")
    table = Table(title="IKE_SA_INIT transforms")
    for column in ("", "transform", "responder", "evidence", "verdict", "rule", "source"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        o = row.observation
        verdict = f"[{_VERDICT_STYLE[row.verdict]}]{row.verdict}[/]" if row.verdict else ""
        table.add_row(f"({_CLASS_TAG[o.candidate.cls]})", o.candidate.label,
                      f"[{_STATUS_STYLE[o.status]}]{o.status.replace('_', ' ')}[/]", escape(o.evidence),
                      verdict, ", ".join(sorted({f.rule for f in row.findings})),
                      escape("; ".join(dict.fromkeys(s for f in row.findings for s in f.sources))))
    console.print(table)
    data = report.to_json()
    b = data["behaviours"]
    gen = Table(title="behaviour")
    gen.add_column("item")
    gen.add_column("observed", overflow="fold")
    gen.add_row("chosen proposal", escape(str(data["chosen_proposal"])))
    gen.add_row("key exchange preference", f"{', '.join(data['ke_preference']) or '-'} "
                                           f"(order: {data['ke_order'] or 'not inferred'})")
    for key in ("cookie_requested", "fragmentation", "nat_t", "signature_hash_algorithms",
                "intermediate_exchange", "childless", "multiple_auth", "certificate_request", "udp_4500",
                "ikev1"):
        value = b.get(key)
        gen.add_row(key.replace("_", " "), "not verified" if value is None else escape(json.dumps(value)))
    for vid in b.get("vendor_ids", []):
        gen.add_row("vendor id", f"{vid['hex']} ({vid['name'] or 'unknown'})")
    console.print(gen)
    if report.findings:
        ft = Table(title="findings")
        for column in ("rule", "severity", "problem", "source", "fix"):
            ft.add_column(column, overflow="fold")
        for f in report.findings:
            ft.add_row(f.rule, "warning" if f.warning else f.severity, escape(f.message),
                       escape("; ".join(f.sources)), escape(f.fix))
        console.print(ft)
    for note in r.notes:
        console.print(f"note: {escape(note)}")
    if r.stop_reason:
        console.print(f"[bold magenta]scan stopped:[/] {escape(r.stop_reason)}")
    console.print(f"{r.probes} probes ({r.datagrams} datagrams) in {r.duration:.1f} s; half-open SAs left "
                  f"at the responder: {r.half_open_left} (they expire at its half-open timeout)"
                  + (f"; {r.garbage} unparsable datagrams" if r.garbage else ""))
    verdicts = {0: "[bold green]PASS[/]", 1: "[bold red]FAIL[/]", 2: "[bold magenta]NOT VERIFIED[/]"}
    console.print(f"profile {report.profile.name}: {verdicts[report.exit_code]} ({report.status} scan, "
                  f"{len(report.errors)} findings, {len(report.findings) - len(report.errors)} warnings)")


@click.command("scan")
@click.argument("target")
@click.option("--profile", "profile_name", default="baseline", show_default=True,
              help="judge accepted transforms by this profile's rules")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False),
              help="TOML file with the expected accepted set ([ike] encr/prf/integ/ke)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (schema ikeguard-scan/1)")
@click.option("--rate", "rate_text", default="10/s", show_default=True, help="most datagrams per second")
@click.option("--timeout", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="seconds to wait for each answer (each probe is sent twice at most)")
@click.option("--max-half-open", type=click.IntRange(min=1), default=2, show_default=True,
              help="most half-open SAs the scan may leave at the responder")
@click.option("--no-4500", "no_4500", is_flag=True, help="do not probe UDP 4500")
@click.option("--no-ikev1", "no_ikev1", is_flag=True,
              help="do not send the IKEv1 Main/Aggressive Mode probes")
@click.option("--ikev1-id", "ikev1_id",
              help="FQDN to send as ID in the Aggressive Mode probe (default: our IP)")
def scan_command(target: str, profile_name: str, policy_path: str | None, as_json: bool, rate_text: str,
                 timeout: float, max_half_open: int, no_4500: bool, no_ikev1: bool,
                 ikev1_id: str | None) -> None:
    """Enumerate what an IKEv2 responder accepts in IKE_SA_INIT and judge it by a profile."""
    try:
        rate = parse_rate(rate_text)
        host, port = parse_target(target)
        profile = load_profile(profile_name)
        policy = load_policy(policy_path) if policy_path else None
        address = _resolve(host, port)
    except ProfileNotFound as exc:
        click.echo(f"ikeguard scan: {str(exc).strip(chr(34) + chr(39))}", err=True)
        sys.exit(2)
    except (click.BadParameter, PolicyFileError) as exc:
        click.echo(f"ikeguard scan: {exc.message if isinstance(exc, click.BadParameter) else exc}", err=True)
        sys.exit(2)
    except (OSError, UnicodeError) as exc:
        click.echo(f"ikeguard scan: cannot resolve {target!r}: {exc}", err=True)
        sys.exit(2)
    options = ScanOptions(rate=rate, timeout=timeout, max_half_open=max_half_open, probe_udp4500=not no_4500,
                          probe_ikev1=not no_ikev1, ikev1_identity=ikev1_id)
    try:
        result = scan(target, address, options)
    except OSError as exc:
        click.echo(f"ikeguard scan: {target}: {exc}", err=True)
        sys.exit(2)
    report = judge(result, profile, policy, policy_path)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print(Console(width=200 if not sys.stdout.isatty() else None), report)
    sys.exit(report.exit_code)
