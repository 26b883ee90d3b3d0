"""`ikeguard check` and `ikeguard profiles` (docs/reference.md "Command line").

check: exit 0 when the config passes its profile, 1 on any failing or not-implemented rule (or an
invalid config), 2 when the file cannot be read, is not TOML, or the profile name is unknown.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ikeguard.policy.errors import ConfigError, ConfigUnreadable, Finding
from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import ProfileNotFound, available_profiles, load_profile
from ikeguard.policy.report import Report, RuleResult, enforcement_points, evaluate, verdict_of
from ikeguard.policy.schema import config_json_schema, peers_json_schema

_STATUS_STYLE = {"fail": "bold red", "not_implemented": "magenta", "waived": "yellow", "warn": "yellow",
                 "not_verified": "magenta", "pass": "green", "not_applicable": "dim"}
_VERDICT_STYLE = {"fail": "bold red", "not_implemented": "magenta", "not_verified": "magenta",
                  "compensating_control": "yellow", "warn": "yellow", "pass": "green",
                  "not_applicable": "dim"}


def _console() -> Console:
    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")  # in a pipe: 200 columns, or more when COLUMNS asks for more
    return Console(width=max(200, int(columns)) if columns.isdigit() else 200)


def _cells(*texts: str | None) -> list[str]:
    """Table cells from configuration, rule and finding text: escaped, so that ``[[audit.sinks]]`` or a
    key path like ``peer[3]`` is printed as written, never read as rich markup."""
    return [escape(t or "") for t in texts]


def _finding_json(f: Finding) -> dict[str, Any]:
    return {"rule": f.rule, "severity": f.severity, "file": f.file, "path": f.path, "value": f.value,
            "message": f.message, "sources": list(f.sources), "fix": f.fix}


def _print_load_findings(console: Console, findings: Sequence[Finding], title: str) -> None:
    table = Table(title=escape(title), show_lines=False)
    for column in ("rule", "severity", "where", "value", "problem / expected"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(*_cells(f.rule, f.severity, f.location(), f.value, f.message))
    console.print(table)


def _results_table(title: str, results: Sequence[RuleResult]) -> Table:
    table = Table(title=escape(title))
    for column in ("status", "rule", "checked", "severity", "where", "value", "problem", "source", "fix"):
        table.add_column(column, overflow="fold")
    for r in results:
        problem = r.message
        if r.compensating_control is not None:
            problem = f"{r.compensating_control}; {problem}"
        status = verdict_of(r.status).replace("_", " ")
        table.add_row(f"[{_STATUS_STYLE[r.status]}]{status}[/]",
                      *_cells(r.rule.id, r.checked, r.severity, r.scope or "(gateway)", r.value, problem,
                              r.rule.source_text, r.rule.fix))
    return table


def _print_report(console: Console, report: Report, warnings: Sequence[Finding]) -> None:
    problems = report.by_status("fail", "not_implemented", "not_verified", "waived", "warn")
    order = {"fail": 0, "not_implemented": 1, "not_verified": 2, "waived": 3, "warn": 4}
    problems.sort(key=lambda r: order[r.status])
    if problems:
        console.print(_results_table(f"{report.config_path}: findings under profile {report.profile.name}",
                                     problems))
    extra = [*warnings, *report.waiver_findings]
    if extra:
        _print_load_findings(console, extra, "configuration warnings")
    requirements = Table(title="verdict per requirement (a requirement passes only when every rule mapped to "
                               "it passes)")
    for column in ("document", "requirement", "verdict", "rules (status)", "checked",
                   "compensating controls"):
        requirements.add_column(column, overflow="fold")
    for v in report.requirements():
        rules = ", ".join(f"{rule} ({status.replace('_', ' ')})" for rule, status in v.rules)
        requirements.add_row(escape(v.document), escape(f"{v.id} {v.title}".strip()),
                             f"[{_VERDICT_STYLE[v.verdict]}]{v.verdict.replace('_', ' ')}[/]",
                             *_cells(rules, ", ".join(v.checked), "; ".join(v.compensating)))
    console.print(requirements)
    counts = {s: len(report.by_status(s))
              for s in ("fail", "not_implemented", "not_verified", "waived", "warn")}
    qualifiers = [f"{counts['waived']} compensating controls" if counts["waived"] else "",
                  f"{counts['not_verified']} not verified" if counts["not_verified"] else "",
                  f"{counts['warn']} warnings" if counts["warn"] else ""]
    qualified = ", ".join(q for q in qualifiers if q)
    if not report.passed:
        verdict = "[bold red]FAIL[/]"
    elif qualified:
        verdict = f"[bold yellow]PASS WITH QUALIFICATIONS[/] ({qualified})"
    else:
        verdict = "[bold green]PASS[/]"
    name = escape(f"{report.profile.name} (version {report.profile.version})")
    console.print(f"profile {name}: {verdict}; "
                  f"{counts['fail']} failed, {counts['not_implemented']} not implemented, "
                  f"{counts['not_verified']} not verified, {counts['waived']} compensating controls, "
                  f"{counts['warn']} warnings")


def _ask_gateway(socket_path: str) -> dict[str, Any]:
    """The running gateway's ``compliance`` answer; exit 2 when no gateway answers (an assessor asked for
    runtime evidence: the report is not silently made without it)."""
    from ikeguard.control.client import ControlClient, ControlError, ControlUnavailable

    try:
        with ControlClient(socket_path) as client:
            response = client.response("compliance")
    except ControlUnavailable as exc:
        click.echo(f"ikeguard check: --socket {socket_path}: {exc}", err=True)
        sys.exit(2)
    except ControlError as exc:
        click.echo(f"ikeguard check: --socket {socket_path}: {exc}", err=True)
        sys.exit(2)
    if not response.get("ok") or not isinstance(response.get("result"), dict):
        click.echo(f"ikeguard check: the gateway did not answer 'compliance': {response.get('error')}",
                   err=True)
        sys.exit(2)
    result: dict[str, Any] = response["result"]
    return result


@click.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="configuration file")
@click.option("--profile", "profile_name", help="check against this profile instead of [gateway] profile")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--strict", is_flag=True,
              help="exit 1 also on warnings, waived findings (compensating controls) and waivers that do "
                   "not apply")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False),
              help="the running gateway's control socket: runtime rules (revocation at IKE_AUTH, SIEM "
                   "delivery, crypto module) are judged from its answer instead of \"not verified\"")
@click.option("--schema", is_flag=True, help="print the JSON Schema of the configuration file and exit")
@click.option("--peers-schema", is_flag=True, help="print the JSON Schema of a peer inventory file and exit")
def check(config_path: str | None, profile_name: str | None, as_json: bool, strict: bool,
          socket_path: str | None, schema: bool, peers_schema: bool) -> None:
    """Validate a config (and the certificates it names) against its compliance profile."""
    if schema or peers_schema:
        click.echo(json.dumps(config_json_schema() if schema else peers_json_schema(), indent=2))
        return
    if config_path is None:
        click.echo("ikeguard check: -c FILE is required (or --schema)", err=True)
        sys.exit(2)
    console = _console()
    try:
        config = load_config(config_path, profile_override=profile_name)
    except ConfigUnreadable as exc:
        click.echo(f"ikeguard check: {exc.findings[0].location()}: {exc.findings[0].message}"
                   if exc.findings[0].file else f"ikeguard check: {exc.findings[0].message}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"config": config_path, "passed": False, "loaded": False,
                                   "findings": [_finding_json(f) for f in exc.findings]}, indent=2))
        else:
            _print_load_findings(console, exc.findings, f"{config_path}: configuration invalid")
        sys.exit(1)
    runtime = _ask_gateway(socket_path) if socket_path is not None else None
    report = evaluate(config, load_profile(config.profile_name), now=dt.datetime.now(dt.UTC), runtime=runtime,
                      open_tokens=True)
    code = report.exit_code(strict=strict, load_warnings=config.warnings)
    if as_json:
        data = report.to_json()
        data["loaded"] = True
        data["load_warnings"] = [_finding_json(f) for f in config.warnings]
        data["strict"] = strict
        data["exit_code"] = code
        data["runtime"] = ({"socket": socket_path, "profile": runtime.get("profile"),
                            "config": runtime.get("config"), "crypto_module": runtime.get("crypto_module")}
                           if runtime is not None else None)
        click.echo(json.dumps(data, indent=2))
    else:
        _print_report(console, report, config.warnings)
        if strict and report.passed and code:
            console.print(f"--strict: exit 1 ({len(report.strict_problems(config.warnings))} warnings, "
                          "compensating controls or waiver problems)")
    sys.exit(code)


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def profiles(name: str | None, as_json: bool) -> None:
    """List the compliance profiles, or show one profile's rules with their sources."""
    console = _console()
    if name is None:
        items = [load_profile(n) for n in available_profiles()]
        if as_json:
            click.echo(json.dumps([{"name": p.name, "title": p.title, "description": p.description,
                                    "rules": len(p.rules)} for p in items], indent=2))
            return
        table = Table(title="compliance profiles")
        for column in ("name", "title", "rules"):
            table.add_column(column, overflow="fold")
        for p in items:
            table.add_row(*_cells(p.name, p.title, str(len(p.rules))))
        console.print(table)
        return
    try:
        profile = load_profile(name)
    except ProfileNotFound as exc:
        click.echo(f"ikeguard profiles: {str(exc).strip(chr(34) + chr(39))}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({
            "name": profile.name, "title": profile.title, "description": profile.description,
            "rules": [{"id": r.id, "title": r.title, "severity": r.severity, "setting": r.setting,
                       "check": r.check, "params": dict(r.params), "sources": list(r.sources),
                       "pci_dss": list(r.pci), "nist_800_53": list(r.nist), "fix": r.fix,
                       "waivable": r.waivable,
                       "enforced_at": list(enforcement_points(r)) or ["not implemented"]}
                      for r in profile.rules]}, indent=2))
        return
    table = Table(title=escape(f"{profile.name}: {profile.title}"))
    for column in ("rule", "severity", "setting", "sources", "PCI DSS", "NIST SP 800-53", "enforced at"):
        table.add_column(column, overflow="fold")
    for r in profile.rules:
        where = escape(", ".join(enforcement_points(r))) or "[magenta]not implemented[/]"
        cells = _cells(r.id, r.severity, r.setting, r.source_text, ", ".join(r.pci), ", ".join(r.nist))
        table.add_row(*cells, where)
    console.print(table)
