"""Issue 19: the remote-access configuration (remote-1/remote-2 rounds, [radius], [pools], groups) as
``ikeguard check`` judges it: a group marked ``cde = true`` with a split tunnel is refused (users reaching
the cardholder data environment get a full tunnel), the same group with ``0.0.0.0/0`` passes the schema;
remote-2 must be EAP, EAP needs a RADIUS server, a pool must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main

BASE = """[gateway]
profile = "baseline"

[radius.servers.a]
address = "127.0.0.1"
secret_file = "radius.secret"

[pools.staff]
addrs = "203.0.113.64/28"

[connections.rw]
pools = ["staff"]

[connections.rw.local]
auth = "psk"
id = "gw.example.net"

[connections.rw.remote-1]
auth = "psk"
id = "client.example.net"

[connections.rw.remote-2]
auth = "eap-radius"
"""


def _check(tmp_path: Path, extra: str, base: str = BASE) -> tuple[int, str]:
    path = tmp_path / "gw.toml"
    path.write_text(base + extra)
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    return result.exit_code, result.output


def test_cde_group_with_split_tunnel_refused(tmp_path: Path) -> None:
    code, out = _check(tmp_path, '\n[connections.rw.groups.cde]\ncde = true\n'
                                 'local_ts = ["198.51.100.0/25"]\n')
    assert code == 1
    assert "config.invalid" in out and "cde = true must be full tunnel" in " ".join(out.split())


def test_cde_group_full_tunnel_passes_the_schema(tmp_path: Path) -> None:
    _code, out = _check(tmp_path, '\n[connections.rw.groups.cde]\ncde = true\nlocal_ts = ["0.0.0.0/0"]\n')
    assert "config.invalid" not in out, out


@pytest.mark.parametrize(("base", "message"), [
    (BASE.replace('auth = "eap-radius"', 'auth = "pubkey"'), "remote-2 must be auth"),
    (BASE.replace('[radius.servers.a]\naddress = "127.0.0.1"\nsecret_file = "radius.secret"\n', ""),
     "relays EAP to RADIUS"),
    (BASE.replace('pools = ["staff"]', 'pools = ["nope"]'), "names pool 'nope'"),
])
def test_rounds_radius_and_pools_consistent(tmp_path: Path, base: str, message: str) -> None:
    code, out = _check(tmp_path, "", base)
    assert code == 1 and message in " ".join(out.split()), out
