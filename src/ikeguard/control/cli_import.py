"""``ikeguard import swanctl.conf [--secrets FILE] -o gateway.toml`` (or ``ipsec.conf`` with
``ipsec.secrets``): move a strongSwan configuration over in one command, with the migration report.

The format is found from SOURCE (named ``*ipsec.conf`` or starting with ``conn``/``config setup``: the legacy
format) unless ``--format`` names it. For ipsec.conf, ``--secrets`` are ipsec.secrets files (default: the
``ipsec.secrets`` beside SOURCE), credentials are in the ipsec.d directory (default: ``ipsec.d`` beside
SOURCE) and ``--local`` says which side is this gateway.

The report has two halves: every swanctl.conf key that has no equivalent (or whose value ikeguard refuses),
with the file and line it came from; and the findings ``ikeguard check`` gives the written configuration under
the chosen profile (what the old configuration got wrong by that profile's measure). Pre-shared keys go to
their own 0600 files beside the output and are never printed.

Exit codes: 0 written and passing the profile; 1 written but the profile finds failures, or the result does
not load (its findings listed); 2 the input cannot be read or parsed, or the output exists (without
``--force``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ikeguard.policy.importers.ipsec_conf import (
    import_ipsec_conf,
    looks_like_ipsec_conf,
    parse_ipsec_conf_file,
    parse_ipsec_secrets_file,
)
from ikeguard.policy.importers.libreswan import detect_flavour, import_libreswan_conf
from ikeguard.policy.importers.settings_syntax import SettingsSyntaxError, parse_settings_file
from ikeguard.policy.importers.swanctl import ImportResult, dump_toml, import_swanctl


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _check(output: Path, profile: str) -> dict[str, Any]:
    """Load the written file and run its profile: the second half of the migration report."""
    from ikeguard.policy.errors import ConfigError
    from ikeguard.policy.loader import load_config
    from ikeguard.policy.profile import load_profile
    from ikeguard.policy.report import evaluate

    try:
        config = load_config(output)
    except ConfigError as exc:
        return {"loaded": False, "passed": False,
                "findings": [{"rule": f.rule, "severity": f.severity, "where": f.location(),
                              "message": f.message} for f in exc.findings]}
    report = evaluate(config, load_profile(profile), now=dt.datetime.now(dt.UTC))
    findings = [{"rule": r.rule.id, "severity": r.severity, "status": r.status,
                 "where": r.scope or "(gateway)", "message": r.message, "source": r.rule.source_text,
                 "fix": r.rule.fix}
                for r in report.by_status("fail", "not_implemented", "warn")]
    return {"loaded": True, "passed": report.passed, "findings": findings}


def _host_port(text: str) -> tuple[str, int | None]:
    """``ADDRESS``, ``ADDRESS:PORT`` or ``[IPv6]:PORT`` (the accounting port is the next one, as RFC 2866)."""
    if text.startswith("[") and "]:" in text:
        host, port = text[1:].split("]:", 1)
    elif text.count(":") == 1:
        host, port = text.split(":", 1)
    else:
        return text.strip("[]"), None
    if not port.isdigit():
        raise click.BadParameter(f"not a port: {port!r}", param_hint="--radius-server")
    return host, int(port)


def _header(source: Path, result: ImportResult, profile: str) -> str:
    lines = [f"Imported from {source} by `ikeguard import` (profile {profile}).",
             "Keys without an ikeguard equivalent (not carried over):"]
    lines += [f"  {u.key} = {u.value}  ({u.where}): {u.reason}" for u in result.unmapped] or ["  (none)"]
    return "\n".join(lines)


def _export_nss(nssdb: str, password: str | None, out: Path, force: bool) -> Any:
    """libreswan's NSS database exported to ``nss/`` beside ``out`` (policy.importers.nss)."""
    from ikeguard.policy.importers.nss import export_nssdb

    target = out.parent.resolve() / "nss"
    if target.exists() and not force:
        click.echo(f"ikeguard import: {target} exists (--force overwrites it)", err=True)
        sys.exit(2)
    return export_nssdb(Path(nssdb), target, password_file=Path(password) if password else None)


@click.command("import")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="the ikeguard configuration to write (secret files go beside it)")
@click.option("--secrets", "secrets", multiple=True, type=click.Path(dir_okay=False),
              help="more swanctl.conf syntax files holding secrets { }, or ipsec.secrets files for an "
                   "ipsec.conf (repeatable)")
@click.option("--swanctl-dir", type=click.Path(file_okay=False),
              help="where x509/, x509ca/, private/ ... are (default: the directory of SOURCE); for an "
                   "ipsec.conf the ipsec.d directory with certs/, cacerts/, private/ (default: SOURCE's "
                   "directory/ipsec.d)")
@click.option("--format", "fmt", type=click.Choice(["auto", "swanctl", "ipsec"]), default="auto",
              show_default=True, help="swanctl.conf or legacy ipsec.conf (auto: from the name and content)")
@click.option("--flavour", type=click.Choice(["auto", "strongswan", "libreswan"]), default="auto",
              show_default=True, help="ipsec.conf: strongSwan's or libreswan's (auto: libreswan-only options "
                                      "or algorithm syntax decide)")
@click.option("--radius-server", "radius_server", default=None, metavar="ADDRESS[:PORT]",
              help="the RADIUS server EAP rounds are relayed to (remote auth = eap-* becomes "
                   "eap-radius); without it EAP connections are not imported")
@click.option("--radius-secret-file", "radius_secret", default=None, type=click.Path(dir_okay=False),
              help="the RADIUS shared secret's file (0600) for --radius-server")
@click.option("--local", "local", default=None,
              help="ipsec.conf: which side is this gateway (left, right, or its address or id; default: the "
                   "%defaultroute side, else the side with a certificate, else left)")
@click.option("--nssdb", "nssdb", default=None, type=click.Path(file_okay=False),
              help="libreswan ipsec.conf: the NSS database (e.g. /var/lib/ipsec/nss) whose certificates, "
                   "keys and trusted CAs are exported beside OUTPUT (nss/certs, nss/private, nss/cacerts) "
                   "and used for leftcert nicknames and trust")
@click.option("--nssdb-password-file", "nssdb_password", default=None, type=click.Path(dir_okay=False),
              help="the NSS database password (libreswan's nsspassword), when it has one")
@click.option("--profile", default="pci-dss-4", show_default=True, help="compliance profile of the result")
@click.option("--dataplane", type=click.Choice(["userspace", "xfrm", "none"]), default="userspace",
              show_default=True, help="[gateway] dataplane of the result")
@click.option("--force", is_flag=True, help="overwrite OUTPUT and its secret files")
@click.option("--json", "as_json", is_flag=True, help="machine-readable migration report")
def import_command(source: str, output: str, secrets: tuple[str, ...], swanctl_dir: str | None, fmt: str,
                   flavour: str, radius_server: str | None, radius_secret: str | None, local: str | None,
                   nssdb: str | None, nssdb_password: str | None, profile: str, dataplane: str, force: bool,
                   as_json: bool) -> None:
    """Convert a swanctl.conf (or a legacy ipsec.conf) into an ikeguard configuration, with a migration
    report."""
    from ikeguard.policy.profile import ProfileNotFound, load_profile

    try:
        load_profile(profile)
    except ProfileNotFound as exc:
        click.echo(f"ikeguard import: {exc}", err=True)
        sys.exit(2)
    src, out = Path(source), Path(output)
    gateway = {"profile": profile, "state_dir": "state", "dataplane": dataplane}
    legacy = fmt == "ipsec" or (fmt == "auto" and looks_like_ipsec_conf(src))
    radius = None
    if radius_server:
        if not radius_secret:
            click.echo("ikeguard import: --radius-server needs --radius-secret-file", err=True)
            sys.exit(2)
        address, port = _host_port(radius_server)
        server: dict[str, Any] = {"address": address, "secret_file": os.path.relpath(
            Path(radius_secret).resolve(), out.parent.resolve())}
        if port is not None:
            server.update(auth_port=port, acct_port=port + 1)
        radius = {"servers": {"radius1": server}}
    try:
        if legacy:
            sections = parse_ipsec_conf_file(src)
            secret_files = [Path(s) for s in secrets]
            if not secret_files and (src.parent / "ipsec.secrets").is_file():
                secret_files = [src.parent / "ipsec.secrets"]
            entries = [e for f in secret_files for e in parse_ipsec_secrets_file(f)]
            if flavour == "auto":
                flavour = detect_flavour(sections, src.read_text(errors="replace"))
            convert = import_libreswan_conf if flavour == "libreswan" else import_ipsec_conf
            ipsec_d = Path(swanctl_dir) if swanctl_dir else src.parent / "ipsec.d"
            exported = _export_nss(nssdb, nssdb_password, out, force) if nssdb else None
            result = convert(sections, entries, ipsec_d=exported.directory if exported else ipsec_d,
                             output_dir=out.parent.resolve(), gateway=gateway, local=local, radius=radius)
            result.flavour = flavour
            if exported is not None:
                result.unmapped[:0] = exported.unmapped
        else:
            tree, located = parse_settings_file(src)
            for extra in secrets:
                parse_settings_file(extra, into=tree, located=located)
            result = import_swanctl(tree, located,
                                    swanctl_dir=Path(swanctl_dir) if swanctl_dir else src.parent,
                                    output_dir=out.parent.resolve(), gateway=gateway, radius=radius)
    except SettingsSyntaxError as exc:
        click.echo(f"ikeguard import: {exc}", err=True)
        sys.exit(2)
    targets = [out, *(out.parent / name for name in result.files)]
    if not force and any(t.exists() for t in targets):
        existing = next(t for t in targets if t.exists())
        click.echo(f"ikeguard import: {existing} exists (--force overwrites it)", err=True)
        sys.exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, content in result.files.items():
        _write_private(out.parent / name, content)
    _write_private(out, dump_toml(result.config, _header(src, result, profile)))
    checked = _check(out, profile)
    code = 0 if checked["passed"] else 1
    if as_json:
        click.echo(json.dumps({
            "source": str(src), "output": str(out), "profile": profile, "flavour": result.flavour,
            "connections": sorted(result.config.get("connections", {})), "skipped": result.skipped,
            "secret_files": sorted(result.files), "unmapped": [u.as_dict() for u in result.unmapped],
            "loaded": checked["loaded"], "passed": checked["passed"], "findings": checked["findings"],
            "exit_code": code}, indent=2))
        sys.exit(code)
    conns = sorted(result.config.get("connections", {}))
    click.echo(f"wrote {out}: {len(conns)} connection(s) ({', '.join(conns) or 'none'}), "
               f"{len(result.files)} secret file(s)")
    if result.skipped:
        click.echo(f"not imported: {', '.join(result.skipped)}")
    click.echo(f"keys without an equivalent: {len(result.unmapped)}")
    for u in result.unmapped:
        click.echo(f"  {u.key} = {u.value}" + (f"  ({u.where})" if u.where else "") + f": {u.reason}")
    if not checked["loaded"]:
        click.echo(f"{out} does not load:")
    else:
        click.echo(f"profile {profile}: {'PASS' if checked['passed'] else 'FAIL'}; findings: "
                   f"{len(checked['findings'])}")
    for f in checked["findings"]:
        click.echo(f"  [{f.get('status', f['severity'])}] {f['rule']} {f['where']}: {f['message']}")
    sys.exit(code)
