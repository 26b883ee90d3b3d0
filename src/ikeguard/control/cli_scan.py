"""`ikeguard scan HOST[:PORT]`: the IKEv2 crypto-negotiation scanner (docs/scan.md).

Exit codes: 0 no finding, 1 findings, 2 could not scan (no IKEv2 answer, a partial scan without findings,
bad usage: unknown profile, unreadable policy file, unresolvable host).
"""

from __future__ import annotations

import json
import re
import socket
import sys
from dataclasses import replace

import click
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki.loading import PkiLoadError, load_certificates
from ikeguard.policy.profile import ProfileNotFound, load_profile
from ikeguard.policy.psk import PskError, secret_file_value
from ikeguard.scan import PolicyFileError, ScanCredentials, ScanOptions, ScanReport, judge, load_policy, scan

_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}
_STATUS_STYLE = {"accepted": "bold", "refused": "dim", "not_verified": "magenta"}
_CLASS_TAG = {"ENCR": "enc", "PRF": "prf", "INTEG": "int", "KE": "kex", "ADDKE": "pq",
              "ESP_ENCR": "esp enc", "ESP_INTEG": "esp int", "ESP_KE": "esp pfs"}


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


def load_credentials(identity: str | None, psk_file: str | None, cert: str | None, key: str | None,
                     cacerts: tuple[str, ...], remote_id: str | None, local_ts: str,
                     remote_ts: str) -> ScanCredentials | None:
    """``--id`` with ``--psk-file`` or ``--cert``/``--key`` -> credentials (None: scan without)."""
    if not (identity or psk_file or cert or key):
        return None
    if not identity or bool(psk_file) == bool(cert or key) or bool(cert) != bool(key):
        raise click.BadParameter("credentials need --id and either --psk-file or both --cert and --key")
    def ts(text: str) -> tuple[str, ...]:
        return tuple(t.strip() for t in text.split(",") if t.strip())
    anchors = tuple(c for path in cacerts for c in load_certificates(_read(path)))
    base = ScanCredentials(identity, remote_id=remote_id, cacerts=anchors, local_ts=ts(local_ts),
                           remote_ts=ts(remote_ts))
    if psk_file:
        return replace(base, psk=secret_file_value(_read(psk_file), "--psk-file").value)
    assert cert is not None and key is not None
    data = _read(key)
    loaded = (load_pem_private_key(data, None) if b"-----BEGIN" in data else load_der_private_key(data, None))
    if not isinstance(loaded, PrivateKey):
        raise click.BadParameter(f"{key}: not an RSA, ECDSA or EdDSA private key")
    return replace(base, private_key=loaded, certs=tuple(load_certificates(_read(cert))))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}") from None


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
    if r.authenticated is not None:
        _print_authenticated(console, data["authenticated"])
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


def _print_authenticated(console: Console, auth: dict[str, object]) -> None:
    table = Table(title="with credentials (IKE_AUTH, CREATE_CHILD_SA)")
    table.add_column("item")
    table.add_column("observed", overflow="fold")
    table.add_row("IKE SA", "established" if auth["established"] else f"[bold magenta]not established[/]: "
                  f"{escape(str(auth['error']))}")
    for key in ("ike_proposal", "remote_id", "child_proposal", "pfs", "chain_status"):
        table.add_row(key.replace("_", " "), escape(str(auth[key])))
    chain = auth["certificate_chain"]
    assert isinstance(chain, list)
    for cert in chain:
        table.add_row("certificate", escape(f"{cert['subject']} (issuer {cert['issuer']}, {cert['key']}, "
                                            f"{cert['signature_algorithm']}, not after {cert['not_after']}, "
                                            f"{cert['days_left']} days left)"))
    console.print(table)


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
@click.option("--id", "identity", help="with credentials: our IKE identity (IDi)")
@click.option("--psk-file", type=click.Path(dir_okay=False),
              help="with credentials: file holding the pre-shared key (text, 0x<hex> or 0s<base64>)")
@click.option("--cert", type=click.Path(dir_okay=False), help="with credentials: our certificate (PEM/DER)")
@click.option("--key", type=click.Path(dir_okay=False), help="with credentials: its private key (PEM/DER)")
@click.option("--cacert", "cacerts", multiple=True, type=click.Path(dir_okay=False),
              help="validate the responder's certificate chain to this anchor (repeatable)")
@click.option("--remote-id", help="with credentials: the responder identity to require (default: any)")
@click.option("--local-ts", default="dynamic", show_default=True,
              help="with credentials: our traffic selectors for the Child SA probes (comma-separated)")
@click.option("--remote-ts", default="0.0.0.0/0,::/0", show_default=True,
              help="with credentials: the responder's side, narrowed by it as it likes")
def scan_command(target: str, profile_name: str, policy_path: str | None, as_json: bool, rate_text: str,
                 timeout: float, max_half_open: int, no_4500: bool, no_ikev1: bool,
                 ikev1_id: str | None, identity: str | None, psk_file: str | None, cert: str | None,
                 key: str | None, cacerts: tuple[str, ...], remote_id: str | None, local_ts: str,
                 remote_ts: str) -> None:
    """Enumerate what an IKEv2 responder accepts in IKE_SA_INIT and judge it by a profile; with
    credentials also the Child SA (ESP) suites and PFS it accepts and the certificate chain it presents."""
    try:
        credentials = load_credentials(identity, psk_file, cert, key, cacerts, remote_id, local_ts, remote_ts)
        rate = parse_rate(rate_text)
        host, port = parse_target(target)
        profile = load_profile(profile_name)
        policy = load_policy(policy_path) if policy_path else None
        address = _resolve(host, port)
    except ProfileNotFound as exc:
        click.echo(f"ikeguard scan: {str(exc).strip(chr(34) + chr(39))}", err=True)
        sys.exit(2)
    except (PskError, PkiLoadError, ValueError) as exc:
        click.echo(f"ikeguard scan: credentials: {exc}", err=True)
        sys.exit(2)
    except (click.BadParameter, PolicyFileError) as exc:
        click.echo(f"ikeguard scan: {exc.message if isinstance(exc, click.BadParameter) else exc}", err=True)
        sys.exit(2)
    except (OSError, UnicodeError) as exc:
        click.echo(f"ikeguard scan: cannot resolve {target!r}: {exc}", err=True)
        sys.exit(2)
    options = ScanOptions(rate=rate, timeout=timeout, max_half_open=max_half_open, probe_udp4500=not no_4500,
                          probe_ikev1=not no_ikev1, ikev1_identity=ikev1_id, credentials=credentials)
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
