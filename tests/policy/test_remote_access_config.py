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


RADSEC = '\n[radius.servers.b]\naddress = "127.0.0.1"\ntransport = "tls"\nca = "ca.pem"\ncert = "gw.pem"\n'
INITIATOR = """[gateway]
profile = "baseline"

[connections.hq]
remote_addrs = ["192.0.2.2"]

[connections.hq.local]
auth = "pubkey"
certs = ["gw.pem"]
key = "gw.key"

[connections.hq.remote]
auth = "pubkey"
id = "hq.example.net"
"""


@pytest.mark.parametrize(("base", "extra", "message"), [
    (BASE, RADSEC, 'needs "ca", "cert" and "key"'),  # RadSec is mutual TLS: our key is required
    (BASE, '\n[radius.servers.c]\naddress = "127.0.0.1"\n', 'over UDP needs "secret_file"'),
    (INITIATOR, '\n[connections.hq.local-2]\nauth = "pubkey"\ncerts = ["x.pem"]\nkey = "x.key"\n',
     "local-2 must be auth"),
    (INITIATOR.replace('auth = "pubkey"\ncerts = ["gw.pem"]\nkey = "gw.key"', 'auth = "eap-md5"')
     .replace('auth = "pubkey"\nid = "hq', 'auth = "psk"\nid = "hq'), "", "EAP-only authentication"),
    # RFC 5998: EAP-only as initiator only with EAP-TLS (our only mutual method), as responder only with
    # the user's EAP as the one round
    (INITIATOR.replace('auth = "pubkey"\ncerts = ["gw.pem"]\nkey = "gw.key"', 'auth = "eap-md5"')
     .replace('auth = "pubkey"\nid = "hq', 'auth = "eap"\nid = "hq'), "", 'needs local auth = "eap-tls"'),
    (BASE.replace('auth = "psk"\nid = "gw', 'auth = "eap"\nid = "gw'), "",
     'needs remote auth = "eap-radius"'),
])
def test_radsec_and_initiator_eap_config_refusals(tmp_path: Path, base: str, extra: str,
                                                  message: str) -> None:
    code, out = _check(tmp_path, extra, base)
    assert code == 1 and message in " ".join(out.split()), out


def test_initiator_eap_needs_its_secret(tmp_path: Path) -> None:
    """The EAP password is looked up when the gateway's plan is built (run refuses to start without it)."""
    import datetime as dt

    from ikeguard.service.plan import ConfigRefused, build_plan

    path = tmp_path / "gw.toml"
    path.write_text(INITIATOR + '\n[connections.hq.local-2]\nauth = "eap-mschapv2"\neap_id = "branch-1"\n')
    with pytest.raises(ConfigRefused) as refused:
        build_plan(path, now=dt.datetime.now(dt.UTC))
    assert "no [secrets.eap.*] has id 'branch-1'" in str(refused.value.findings), refused.value.findings


def test_eap_password_file_must_be_owner_only(tmp_path: Path) -> None:
    """A group/world-readable [secrets.eap] file: check's psk.file-mode fails it under a regulated profile,
    and the gateway's plan refuses to start with it (as for the RADIUS secret)."""
    import datetime as dt

    from ikeguard.service.plan import ConfigRefused, build_plan

    secret = tmp_path / "eap-branch.secret"
    secret.write_text("branch-password\n")
    secret.chmod(0o644)
    text = (INITIATOR + '\n[connections.hq.local-2]\nauth = "eap-mschapv2"\neap_id = "branch-1"\n'
            '\n[secrets.eap.branch]\nid = "branch-1"\nsecret_file = "eap-branch.secret"\n')
    path = tmp_path / "gw.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check", "-c", str(path), "--profile", "pci-dss-4"])
    out = " ".join(result.output.split())
    assert "psk.file-mode" in out and "eap-branch.secret (mode" in out, out
    assert "secret file: group/other" in out, out
    with pytest.raises(ConfigRefused) as refused:
        build_plan(path, now=dt.datetime.now(dt.UTC))
    assert "EAP password file must be readable only by its owner" in str(refused.value.findings)
    assert "branch-password" not in out and "branch-password" not in str(refused.value.findings)
