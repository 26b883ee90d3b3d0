"""``ikeguard evidence``: the auditor's evidence pack in one command, and ``ikeguard evidence verify PACK``.

docs/evidence.md says what each file of a pack proves. Exit codes: 0 made / intact, 1 a finding (the pack
was made but the trail does not verify; or verify names what changed), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ikeguard.audit.chain import fingerprint
from ikeguard.audit.store import AuditStore, AuditStoreError, read_verification_key
from ikeguard.control.cli_audit import _user, state_dir_from
from ikeguard.evidence import pack as evidence_pack
from ikeguard.evidence.ca import CaEvidenceError
from ikeguard.evidence.ca import names_in as ca_names
from ikeguard.evidence.ca import open_all as open_cas
from ikeguard.evidence.period import PeriodError, parse_date
from ikeguard.evidence.signing import SigningError
from ikeguard.evidence.verify import verify_pack
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import load_config


def _key(path: Path | None, state: Path | None) -> bytes | None:
    if path is None:
        if state is None or not (state / "audit-verification.key").is_file():
            return None
        path = state / "audit-verification.key"
    try:
        return read_verification_key(path)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"cannot read verification key {path}: {exc}") from exc


@click.group("evidence", invoke_without_command=True)
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="gateway config file")
@click.option("--from", "start", metavar="DATE",
              help="start of the period (YYYY-MM-DD or RFC 3339, inclusive)")
@click.option("--to", "end", metavar="DATE", help="end of the period (YYYY-MM-DD: that day included)")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="the pack: NAME.zip or a new directory")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              help="verification key, to include `audit verify` (default: the state directory's copy)")
@click.option("--scan", "scan_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="an `ikeguard scan --json` result of this gateway to include (repeatable)")
@click.option("--sign-key", metavar="KEY",
              help="also sign the manifest with this key: a PEM private key file or a pkcs11: URI (RFC 7512)")
@click.option("--ca", "ca_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="an `ikeguard pki` CA directory: its issuance log, its key's HSM access log and its "
                   "certificate inventory go into ca/NAME/ (repeatable)")
@click.pass_context
def evidence(ctx: click.Context, config_path: Path | None, start: str | None, end: str | None,
             output: Path | None, key_file: Path | None, scan_files: tuple[Path, ...],
             sign_key: str | None, ca_dirs: tuple[Path, ...]) -> None:
    """Build an evidence pack for auditors from the gateway's own records (docs/evidence.md)."""
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None or start is None or end is None or output is None:
        raise click.UsageError("give -c FILE --from DATE --to DATE -o PACK (or: evidence verify PACK)")
    try:
        period_start, period_end = parse_date(start), parse_date(end, end=True)
    except PeriodError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"ikeguard evidence: {config_path}: configuration invalid: "
                   f"{'; '.join(f.message for f in exc.findings)}", err=True)
        sys.exit(2)
    state = state_dir_from(config_path, None)
    try:
        store = AuditStore(state, create=False)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"no readable audit trail in {state}: {exc}") from exc
    try:
        scans = tuple(evidence_pack.scan_document(p.read_bytes(), str(p)) for p in scan_files)
        cas = tuple(open_cas(ca_dirs))
    except (OSError, evidence_pack.PackError, CaEvidenceError) as exc:
        store.close()
        raise click.UsageError(str(exc)) from exc
    src = evidence_pack.PackInput(config, store, period_start, period_end, _key(key_file, state), _user(),
                                  scans, sign_key, cas)
    try:
        files = evidence_pack.build(src)
        evidence_pack.write(files, output)
    except (AuditStoreError, PeriodError, OSError, SigningError) as exc:
        click.echo(f"ikeguard evidence: {exc}", err=True)
        sys.exit(2)
    finally:
        store.close()
        for ca in cas:
            ca.close()
    creation = json.loads(files[evidence_pack.VOLATILE])
    seal = json.loads(files[evidence_pack.SEAL])
    period = json.loads(files["period.json"])
    click.echo(f"{output}: {len(files)} files, records {period['first_seq']}..{period['last_seq']} "
               f"({period['records']}), manifest sealed by trail record {seal['seq']}")
    intact = _say_verified("the audit trail", "", creation["audit_verify"])
    for name, ca in creation.get("ca", {}).items():
        intact = _say_verified(f"the audit trail of CA {name}", f"CA {name}: ", ca["audit_verify"]) and intact
    if not intact:
        sys.exit(1)


def _say_verified(trail: str, prefix: str, status: dict[str, Any]) -> bool:
    """One line on a trail's ``audit verify`` when the pack was made; False if it does not verify."""
    if status["ok"] is None:
        click.echo(f"note: {prefix}{status['reason']}")
    elif not status["ok"]:
        click.echo(f"FAILED: {trail} does not verify: seq {status['first_bad_seq']}: {status['reason']}")
        return False
    else:
        click.echo(f"{prefix}audit verify: {status['checked']} records intact "
                   f"(key {status['key_fingerprint']})")
    return True


@evidence.command("verify")
@click.argument("pack", type=click.Path(path_type=Path, exists=True))
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              help="the trail's verification key (the auditor's copy): checks the manifest seal and "
                   "the records")
@click.option("--fingerprint", "expected_fpr", help="fail unless the key has this fingerprint")
@click.option("--signer", metavar="SHA256",
              help="fail unless the manifest is signed by the key with this SubjectPublicKeyInfo SHA-256")
@click.option("--ca-key", "ca_key_files", multiple=True, metavar="NAME=FILE",
              help="the verification key of CA NAME's trail (ca/NAME/ in the pack; the CA directory's "
                   "audit/audit-verification.key): checks its records' seals (repeatable)")
@click.option("--json", "as_json", is_flag=True)
def verify_command(pack: Path, key_file: Path | None, expected_fpr: str | None, signer: str | None,
                   ca_key_files: tuple[str, ...], as_json: bool) -> None:
    """Check a pack offline: files against the sealed manifest, the trail records, the derived files."""
    key = _key(key_file, None) if key_file is not None else None
    if key is not None and expected_fpr is not None and expected_fpr.strip().lower() != fingerprint(key):
        click.echo(f"FAILED: verification key fingerprint is {fingerprint(key)}, expected {expected_fpr}")
        sys.exit(1)
    try:
        files = evidence_pack.read(pack)
    except (OSError, ValueError) as exc:
        click.echo(f"ikeguard evidence verify: {pack}: {exc}", err=True)
        sys.exit(2)
    ca_keys: dict[str, bytes] = {}
    for item in ca_key_files:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.UsageError(f"--ca-key {item}: give NAME=FILE")
        ca_key = _key(Path(path), None)
        assert ca_key is not None  # a path given: the key, or a usage error
        ca_keys[name] = ca_key
    report = verify_pack(files, key, signer, ca_keys)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for problem in report.problems:
            click.echo(f"FAILED: {problem}")
        for note in report.notes:
            click.echo(f"note: {note}")
        if report.ok:
            click.echo(f"OK: {pack}: {report.checked_files} files as sealed, {report.checked_records} trail "
                       "records verified, derived files match the records")
    # 0 only when everything was checked: the trail's seals and every CA trail's (a note says what was not)
    unchecked = [n for n in ca_names(files) if n not in ca_keys]
    sys.exit(0 if report.ok and key is not None and not unchecked else 1)
