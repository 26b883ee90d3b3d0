"""``ikeguard audit verify|tail|export|archive``: check, follow and export the tamper-evident trail.

The state directory comes from ``--state-dir DIR`` or from ``-c FILE`` (``gateway.state_dir``, relative to
the config file, default ``state``; read with tomllib so the command works even when the rest of the config
would not load). Every read of the trail is itself recorded (``audit.accessed``, ``audit.exported``:
PCI DSS 10.2.1.3) before data is shown. Exit codes: 0 ok, 1 a finding, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ikeguard.audit import bundle, lifecycle
from ikeguard.audit.archive import span_days
from ikeguard.audit.chain import Record, VerifyReport, fingerprint
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.store import AuditStore, AuditStoreError, parse_time, read_verification_key, utc_now


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid:{os.getuid()}"


def state_dir_from(config: Path | None, state_dir: Path | None) -> Path:
    """The state directory from ``--state-dir`` or the config file's ``gateway.state_dir``."""
    if state_dir is not None:
        return state_dir
    if config is None:
        raise click.UsageError("give -c FILE or --state-dir DIR")
    try:
        data = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"cannot read {config}: {exc}") from exc
    gateway = data.get("gateway", {})
    value = gateway.get("state_dir", "state") if isinstance(gateway, dict) else "state"
    return (config.parent / str(value)).resolve()


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Path | None], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            ctx.ensure_object(dict)[key] = value

    return callback


F = TypeVar("F", bound=Callable[..., Any])


def location(f: F) -> F:
    """``-c FILE`` / ``--state-dir DIR`` also after the subcommand (``ikeguard audit verify -c FILE``)."""
    f = click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        expose_value=False,
        callback=_remember("state_dir_opt"),
        help="state directory",
    )(f)
    return click.option(
        "-c",
        "--config",
        type=click.Path(path_type=Path, dir_okay=False),
        expose_value=False,
        callback=_remember("config"),
        help="gateway config file",
    )(f)


def _state_dir(ctx: click.Context) -> Path | None:
    """From -c/--state-dir; with neither, the default config's (``$IKEGUARD_CONFIG`` or
    ``/etc/ikeguard/gateway.toml``) when that file exists."""
    from ikeguard.control.defaults import default_config

    obj = ctx.ensure_object(dict)
    config, state_dir = obj.get("config"), obj.get("state_dir_opt")
    if config is None and state_dir is None and default_config().is_file():
        config = default_config()
    return state_dir_from(config, state_dir) if (config or state_dir) else None


def _open(ctx: click.Context) -> AuditStore:
    path = _state_dir(ctx)
    if path is None:
        raise click.UsageError("give -c FILE or --state-dir DIR")
    try:
        return AuditStore(path, create=False)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"no readable audit trail in {path}: {exc}") from exc


def _record_access(store: AuditStore, event: AuditEvent) -> None:
    try:
        store.append(event)
    except AuditStoreError as exc:
        raise click.UsageError(f"cannot record this access to the audit trail (refused): {exc}") from exc


@click.group("audit")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), help="gateway config file")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="state directory")
@click.pass_context
def audit(ctx: click.Context, config: Path | None, state_dir: Path | None) -> None:
    """Verify, follow and export the tamper-evident audit trail."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    ctx.obj["config"] = config
    ctx.obj["state_dir_opt"] = state_dir


def _report_out(report: VerifyReport, fpr: str, as_json: bool, what: str) -> None:
    f = report.finding
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "fingerprint": fpr,
                    "first_bad_seq": f.seq if f else None,
                    "reason": f.reason if f else None,
                    "notes": report.notes,
                }
            )
        )
        return
    click.echo(f"verification key fingerprint: {fpr}")
    if f is None:
        click.echo(
            f"OK: {what}: {report.checked} records verified "
            f"(seq {report.first_seq}..{report.last_seq}); chain and seals intact"
        )
    else:
        click.echo(f"FAILED: {what}: first bad record seq {f.seq}: {f.reason}")
    for note in report.notes:
        click.echo(f"note: {note}")


@audit.command()
@location
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the verification key file (default: the copy in the state directory)",
)
@click.option("--fingerprint", "expected_fpr", help="fail unless the key has this fingerprint")
@click.option(
    "--bundle",
    "bundle_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="verify an exported bundle or archive file instead of the store",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(
    ctx: click.Context,
    key_file: Path | None,
    expected_fpr: str | None,
    bundle_file: Path | None,
    as_json: bool,
) -> None:
    """Check chain and forward-secure seals; exit 1 naming the first bad sequence number."""
    state = _state_dir(ctx)
    given = key_file is not None
    if key_file is None:
        if state is None:
            raise click.UsageError("give --key FILE (or -c/--state-dir to use the state directory's copy)")
        key_file = state / "audit-verification.key"
    try:
        key = read_verification_key(key_file)
    except FileNotFoundError as exc:
        if given:
            raise click.UsageError(f"cannot read verification key {key_file}: {exc}") from exc
        raise click.UsageError(  # docs/audit.md: the key is moved off the host after the first start
            f"no verification key at {key_file} (moved off this host, as docs/audit.md advises?): "
            "pass the copy you keep with --key FILE") from exc
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"cannot read verification key {key_file}: {exc}") from exc
    fpr = fingerprint(key)
    if expected_fpr is not None and expected_fpr.strip().lower() != fpr:
        click.echo(f"FAILED: verification key fingerprint is {fpr}, expected {expected_fpr}")
        sys.exit(1)
    if bundle_file is not None:
        try:
            data = bundle.parse(bundle_file.read_bytes())
            report = bundle.verify(data, key)
        except (OSError, bundle.BundleError) as exc:
            raise click.UsageError(f"cannot read bundle {bundle_file}: {exc}") from exc
        _report_out(report, fpr, as_json, f"bundle {bundle_file.name}")
        sys.exit(0 if report.ok else 1)
    store = _open(ctx)
    try:
        report = lifecycle.verify_trail(store, key)
        _report_out(report, fpr, as_json, f"trail in {store.state_dir}")
        _record_access(
            store,
            AuditEvent(
                EventName.AUDIT_ACCESSED,
                Outcome.SUCCESS if report.ok else Outcome.FAILURE,
                admin=_user(),
                reason="audit verify",
                details={"command": "verify", "verified": report.ok},
            ),
        )
    finally:
        store.close()
    sys.exit(0 if report.ok else 1)


def _line(rec: Record) -> str:
    b = rec.body
    parts = [f"{rec.seq:>8}", rec.time, str(b.get("event")), str(b.get("outcome"))]
    for key in ("connection", "remote_addr", "remote_id", "admin", "user"):
        if b.get(key):
            parts.append(f"{key}={b[key]}")
    if b.get("reason"):
        parts.append(f"reason={b['reason']!r}")
    return "  ".join(parts)


@audit.command()
@location
@click.option("-n", "count", type=click.IntRange(min=0), default=20, show_default=True, help="last N records")
@click.option("-f", "--follow", is_flag=True, help="keep printing new records")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tail(ctx: click.Context, count: int, follow: bool, as_json: bool) -> None:
    """Show the last records (and follow new ones)."""
    store = _open(ctx)
    try:
        _record_access(
            store,
            AuditEvent(
                EventName.AUDIT_ACCESSED,
                admin=_user(),
                reason="audit tail",
                details={"command": "tail", "follow": follow},
            ),
        )
        head, _ = store.head()
        start = max(store.first_online_seq() or 1, head - count + 1)
        nxt = start
        while True:
            for rec in store.records(nxt) if nxt <= store.head()[0] else []:
                click.echo(json.dumps(rec.to_json(), sort_keys=True) if as_json else _line(rec))
                nxt = rec.seq + 1
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    finally:
        store.close()


def _bound(store: AuditStore, value: str, upper: bool) -> int:
    if value.isdigit():
        return int(value)
    try:
        when = parse_time(value)
    except ValueError as exc:
        raise click.UsageError(f"{value!r} is neither a sequence number nor an RFC 3339 time") from exc
    found = store.seq_before(when) if upper else store.seq_at_or_after(when)
    if found is None:
        raise click.UsageError(f"no record {'at or before' if upper else 'at or after'} {value}")
    return found


@audit.command()
@location
@click.option("--from", "from_", required=True, help="first sequence number or RFC 3339 time")
@click.option("--to", "to", required=True, help="last sequence number or RFC 3339 time")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="write here (else stdout)"
)
@click.pass_context
def export(ctx: click.Context, from_: str, to: str, output: Path | None) -> None:
    """Export a sealed, verifiable bundle (records + seals + chain anchor); recorded as audit.exported."""
    store = _open(ctx)
    try:
        lo, hi = _bound(store, from_, False), _bound(store, to, True)
        try:
            data = store.export(lo, hi, admin=_user())
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        except AuditStoreError as exc:
            raise click.UsageError(f"cannot record the export (refused): {exc}") from exc
    finally:
        store.close()
    text = json.dumps(data, sort_keys=True, indent=1)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text)
        click.echo(
            f"exported seq {data['from_seq']}..{data['to_seq']} to {output} "
            f"(verify: ikeguard audit verify --key KEY --bundle {output})",
            err=True,
        )


def _spans(ctx: click.Context, online_days: int | None, retention_days: int | None) -> tuple[int, int]:
    """Online and retention days: options, else ``[audit] online``/``retention`` spans or ``*_days``."""
    audit_cfg: dict[str, object] = {}
    config: Path | None = ctx.obj.get("config")
    if config is not None:
        try:
            section = tomllib.loads(config.read_text()).get("audit", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise click.UsageError(f"cannot read {config}: {exc}") from exc
        audit_cfg = section if isinstance(section, dict) else {}
    try:
        online = online_days or span_days(str(audit_cfg.get("online", audit_cfg.get("online_days", 90))))
        retention = retention_days or span_days(
            str(audit_cfg.get("retention", audit_cfg.get("retention_days", 365))))
    except ValueError as exc:
        raise click.UsageError(f"[audit]: {exc}") from exc
    return online, retention


@audit.command()
@location
@click.option("--online-days", type=click.IntRange(min=1), default=None,
              help="default: [audit] online (or online_days)")
@click.option("--retention-days", type=click.IntRange(min=1), default=None,
              help="default: [audit] retention (or retention_days)")
@click.option("--now", "now_text", help="RFC 3339 time to plan for (default: now)")
@click.pass_context
def archive(
    ctx: click.Context, online_days: int | None, retention_days: int | None, now_text: str | None
) -> None:
    """Move records older than the online span to a compressed, sealed segment; list those past retention."""
    online, retention = _spans(ctx, online_days, retention_days)
    now = parse_time(now_text) if now_text else utc_now()
    store = _open(ctx)
    try:
        plan, path = store.apply_retention(now=now, online_days=online, retention_days=retention)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"archived through seq {plan.archive_through} to {path}" if path else "nothing to archive")
    for name in plan.expired_archives:
        click.echo(f"past retention ({retention} days), may be disposed of (`audit dispose {name}`): {name}")


@audit.command()
@location
@click.argument("name")
@click.option("--retention-days", type=click.IntRange(min=1), default=None,
              help="default: [audit] retention (or retention_days)")
@click.option("--now", "now_text", help="RFC 3339 time to judge at (default: now)")
@click.pass_context
def dispose(ctx: click.Context, name: str, retention_days: int | None, now_text: str | None) -> None:
    """Delete archive segment NAME once its retention is over (refused and recorded inside it)."""
    _online, retention = _spans(ctx, None, retention_days)
    now = parse_time(now_text) if now_text else utc_now()
    store = _open(ctx)
    try:
        done, message = lifecycle.dispose(store, Path(name).name, now=now, retention_days=retention,
                                          admin=_user())
    except lifecycle.LifecycleError as exc:
        raise click.UsageError(str(exc)) from exc
    except AuditStoreError as exc:
        raise click.UsageError(f"cannot record the disposal (refused): {exc}") from exc
    finally:
        store.close()
    click.echo(message if done else f"REFUSED: {message}")
    sys.exit(0 if done else 1)


@audit.command()
@location
@click.argument("segment", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              help="the verification key file (default: the copy in the state directory)")
@click.pass_context
def restore(ctx: click.Context, segment: Path, key_file: Path | None) -> None:
    """Put an archive segment back from offline storage (checked against the trail's archive index)."""
    state = _state_dir(ctx)
    key_file = key_file or (state / "audit-verification.key" if state is not None else None)
    if key_file is None:
        raise click.UsageError("give --key FILE")
    try:
        key = read_verification_key(key_file)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"cannot read verification key {key_file}: {exc}") from exc
    store = _open(ctx)
    try:
        target = lifecycle.restore(store, segment, key, admin=_user())
    except lifecycle.LifecycleError as exc:
        click.echo(f"REFUSED: {exc}")
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"restored {target}")


@audit.command()
@location
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the trail and export the verification key ONCE; prints its fingerprint for the auditor."""
    path = _state_dir(ctx)
    if path is None:
        raise click.UsageError("give -c FILE or --state-dir DIR")
    if (path / "audit.db").exists():
        raise click.UsageError(f"an audit trail already exists in {path}")
    try:
        store = AuditStore(path)
    except OSError as exc:
        raise click.UsageError(f"cannot create the audit trail in {path}: {exc}") from exc
    store.close()
    click.echo(f"audit trail created in {path}")
    click.echo(f"verification key: {store.verification_key_path} (mode 0400) - move it off this host")
    click.echo(f"verification key fingerprint: {store.initialised_fingerprint}")
