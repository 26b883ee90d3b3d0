"""``ikeguard pki``: the gateway's certificate lifecycle (docs/pki.md). ``pki acme status`` shows when the
``[acme]`` certificate is renewed next and how the last attempt went; ``pki acme renew`` renews it now through
the running gateway (which writes the file, audits ``pki.issued`` and reloads without dropping SAs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from ikeguard.control.cli_gateway import _print_json, call, gateway_options


def _when(ts: float) -> str:
    if not ts or ts == float("inf"):
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    click.echo(f"certificate valid until {_when(result.get('not_after', 0))}; "
               f"next renewal attempt {_when(result.get('next_attempt', 0))}")
    if result.get("failures"):
        click.echo(f"{result['failures']} failed attempt(s) in a row; last: {result.get('last_error')}")


@click.group("pki")
def pki() -> None:
    """Certificates of the gateway: ACME enrolment and renewal (docs/pki.md)."""


@pki.group("acme")
def acme() -> None:
    """The [acme] certificate (RFC 8555) of the running gateway."""


@acme.command("status")
@gateway_options
def status(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """When the certificate expires and is renewed next; failed attempts."""
    _show(call(config, socket_path, "acme", action="status")["result"], as_json)


@acme.command("renew")
@gateway_options
def renew(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Renew the certificate now (the gateway orders it, writes it and uses it from the next IKE_AUTH)."""
    _show(call(config, socket_path, "acme", action="renew")["result"], as_json)
