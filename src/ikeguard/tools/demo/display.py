"""What `ikeguard demo` prints: a spinner per running step, a tick or cross when it ends, the evidence each
step shows (SA table, ping counts, the refusal's audit record, check and verify results) and a summary.

All output goes through one `rich` console; with `--json` it is stderr, so stdout carries only the JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ikeguard.tools.demo.scenario import (
    ESP_PROPOSAL,
    IKE_PROPOSAL,
    MERCHANT_A,
    MERCHANT_B,
    MERCHANT_C,
    PROCESSOR,
    REMOTE_ID_PATTERN,
)

if TYPE_CHECKING:
    from ikeguard.tools.demo.result import DemoResult

_AUDIT_FIELDS = (
    "seq",
    "time",
    "event",
    "outcome",
    "reason",
    "connection",
    "remote_addr",
    "remote_id",
    "local_id",
    "ike_uniqueid",
)


def check_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The essentials of `ikeguard check --json`: verdict, rule counts, the non-passing rules."""
    rules: dict[str, str] = report.get("rules", {})
    problems = [
        {"rule": f.get("rule"), "status": f.get("status"), "message": f.get("message", "")}
        for f in report.get("findings", [])
        if f.get("status") != "pass"
    ]
    return {
        "profile": report.get("profile"),
        "passed": bool(report.get("passed")),
        "passed_rules": sum(1 for s in rules.values() if s == "pass"),
        "warnings": sum(1 for s in rules.values() if s == "warn"),
        "not_applicable": sum(1 for s in rules.values() if s == "not_applicable"),
        "requirements_passed": sum(1 for r in report.get("requirements", []) if r.get("verdict") == "pass"),
        "requirements": len(report.get("requirements", [])),
        "problems": problems,
    }


def first_line(text: str) -> str:
    """The first line of a (possibly multi-line) message, for tables and one-line verdicts."""
    return text.strip().splitlines()[0] if text.strip() else ""


class Display:
    """Rich progress display and evidence panels for one demo run."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @property
    def inner_width(self) -> int:
        """Columns available inside a panel (for the CLI output shown in one)."""
        return max(60, self.console.width - 4)

    def intro(self) -> None:
        """What the demo is about to show."""
        self.console.print(
            Panel.fit(
                Text.from_markup(
                    "[bold]ikeguard demo: the payment-processor case[/]\n"
                    f"processor gateway [cyan]{PROCESSOR.identity}[/] ({PROCESSOR.address}, "
                    f"subnet {PROCESSOR.subnet}) with one template connection for "
                    f"[cyan]{REMOTE_ID_PATTERN}[/] and a peer inventory;\n"
                    f"merchant A ({MERCHANT_A.address}, {MERCHANT_A.subnet}) and merchant B "
                    f"({MERCHANT_B.address}, {MERCHANT_B.subnet}); IKE {IKE_PROPOSAL}, "
                    f"ESP {ESP_PROPOSAL} (PFS); profile pci-dss-4;\n"
                    f"merchant C ({MERCHANT_C.address}) reported its device stolen (certificate revoked)"
                ),
                border_style="blue",
            )
        )

    @contextlib.contextmanager
    def running(self, title: str) -> Iterator[None]:
        """A spinner while a step runs (plain output when not on a terminal)."""
        with self.console.status(f"[bold]{title}[/] ..."):
            yield

    def step_done(self, title: str, ok: bool, seconds: float, detail: str) -> None:
        """One line per finished step."""
        mark = "[bold green]✔[/]" if ok else "[bold red]✘[/]"
        self.console.print(f"{mark} {title} [dim]({seconds:.1f} s)[/]", highlight=False)
        if detail:
            self.console.print(Padding(Text(detail, style="dim" if ok else "red"), (0, 0, 0, 4)))

    def command_output(self, command: str, output: str, returncode: int = 0) -> None:
        """A real CLI command and what it printed."""
        style = "green" if returncode == 0 else "yellow"
        body = Text.from_ansi(output.rstrip() or "(no output)")
        self.console.print(
            Panel(
                body,
                title=f"$ {command}",
                title_align="left",
                subtitle=f"exit {returncode}",
                subtitle_align="right",
                border_style=style,
            )
        )

    def check(self, config: Path, summary: dict[str, Any], returncode: int) -> None:
        """`ikeguard check` in short: verdict, counts and every non-passing rule."""
        verdict = "[bold green]PASS[/]" if summary["passed"] else "[bold red]FAIL[/]"
        table = Table(
            title=f"$ ikeguard check -c {config}  ->  {verdict} (exit {returncode})", title_justify="left"
        )
        table.add_column("status")
        table.add_column("rule")
        table.add_column("detail", overflow="fold")
        for p in summary["problems"]:
            style = {"fail": "bold red", "not_implemented": "magenta", "warn": "yellow"}.get(p["status"], "")
            table.add_row(f"[{style}]{p['status']}[/]" if style else p["status"], p["rule"], p["message"])
        table.add_row(
            "[green]pass[/]",
            f"{summary['passed_rules']} rules",
            f"{summary['requirements_passed']} of {summary['requirements']} requirements pass (every rule "
            "mapped to them passed); "
            f"{summary['not_applicable']} rules not applicable (no PSK)",
        )
        self.console.print(table)

    def traffic(self, pings: list[dict[str, Any]]) -> None:
        """Ping results with the processor's Child SA counters."""
        table = Table(title="traffic through the tunnels", title_justify="left")
        for column in ("merchant", "ping", "replies", "processor Child SA packets in"):
            table.add_column(column)
        for p in pings:
            ok = p["sent"] > 0 and p["received"] == p["sent"]
            replies = (
                f"[green]{p['received']}/{p['sent']}[/]" if ok else f"[red]{p['received']}/{p['sent']}[/]"
            )
            table.add_row(
                p["site"], f"{p['from']} -> {p['to']}", replies, str(p.get("processor_packets_in", ""))
            )
        self.console.print(table)

    def audit_record(self, title: str, record: dict[str, Any]) -> None:
        """One audit record, key fields first."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key in _AUDIT_FIELDS:
            if record.get(key) not in (None, ""):
                table.add_row(key, str(record[key]))
        for key, value in sorted(record.items()):
            if key in _AUDIT_FIELDS or key in ("prev", "hash", "seal") or value in (None, "", {}, []):
                continue
            table.add_row(key, str(value))
        self.console.print(Panel(table, title=title, title_align="left", border_style="green"))

    def warning(self, text: str) -> None:
        """A problem that does not stop the run."""
        self.console.print(f"[yellow]warning:[/] {text}")

    def teardown_done(self, result: DemoResult) -> None:
        """Confirm what was removed."""
        kept = f"; files kept in {result.workdir}" if result.kept else ""
        self.console.print(
            f"[bold green]✔[/] removed {len(result.namespaces)} namespaces, the gateway and SIEM "
            f"processes and their TUN devices{kept}",
            highlight=False,
        )

    def summary(self, result: DemoResult) -> None:
        """What was shown, step by step, and the verdict."""
        table = Table(title="summary", title_justify="left")
        table.add_column("")
        table.add_column("step")
        table.add_column("shown", overflow="fold")
        for s in result.steps:
            table.add_row("[green]✔[/]" if s.ok else "[red]✘[/]", s.title, first_line(s.detail))
        self.console.print(table)
        if result.ok:
            self.console.print(
                f"[bold green]demo passed[/] in {result.seconds:.1f} s: tunnels up with "
                f"{IKE_PROPOSAL} / {ESP_PROPOSAL}, traffic through them, merchant B's claim of "
                "merchant A's subnet refused (ts.rejected), a revoked device refused (CRL), "
                "check and audit verify passing."
            )
        else:
            reason = first_line(result.error or "")
            self.console.print(f"[bold red]demo failed[/] at step [bold]{result.failed_step}[/]: {reason}")
