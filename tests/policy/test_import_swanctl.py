"""`ikeguard import swanctl.conf`: a corpus of swanctl.conf files written the way strongSwan operators write
them (PSK with 0x/0s secrets, certificates made with strongSwan's `pki`, several children, IPv6, includes,
road warriors with EAP, IKEv1 leftovers, pools). Each import writes a TOML that loads, lists every key without
an equivalent with its file and line, keeps secrets out of the report (in 0600 files, unchanged), and reports
the profile's findings; the settings parser is checked on strongSwan's syntax corners and bounded."""

from __future__ import annotations

import json
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.policy.importers.settings_syntax import SettingsSyntaxError, parse_settings
from ikeguard.policy.loader import load_config
from tests.harness.pki_tool import PkiTool

SECRET_HEX = "0x3f2a9b7c1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304a5b6c7d8"
SECRET_B64 = "0sOWFkM2U0ZjVhNmI3YzhkOWUwZjFhMmIzYzRkNWU2ZjdhOGI5YzBkMWUyZjNhNGI1YzY="

PSK_SITE = f"""\
# HQ <-> branch, PSK
connections {{
    hq-branch {{
        version = 2
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.2
        proposals = aes256gcm16-prfsha384-ecp384
        rekey_time = 8h
        reauth_time = 1d
        rand_time = 30m
        dpd_delay = 30s
        send_certreq = no
        local {{
            auth = psk
            id = hq.example.com
        }}
        remote {{
            auth = psk
            id = branch.example.com
        }}
        children {{
            lan {{
                local_ts = 198.51.100.0/25
                remote_ts = 198.51.100.128/25
                esp_proposals = aes256gcm16-ecp384
                rekey_time = 1h
                rand_time = 5m
                start_action = trap
                updown = /usr/lib/ipsec/_updown iptables
            }}
            voice {{
                local_ts = 203.0.113.0/26
                remote_ts = 203.0.113.64/26
                esp_proposals = aes256gcm16-ecp384
                mode = tunnel
                dpd_action = restart
            }}
        }}
    }}
}}

secrets {{
    ike-branch {{
        id-hq = hq.example.com
        id-branch = branch.example.com
        secret = {SECRET_HEX}
    }}
}}
"""

IPV6_PSK = f"""\
connections {{
    v6 {{
        local_addrs = 2001:db8:1::1
        remote_addrs = 2001:db8:2::1
        proposals = aes256gcm16-prfsha384-ecp384, aes256-sha384-ecp384
        local {{
            auth = psk
            id = @gw6.example.net
        }}
        remote {{
            auth = psk
            id = @peer6.example.net
        }}
        children {{
            net6 {{
                local_ts = 2001:db8:10::/48
                remote_ts = 2001:db8:20::/48
                esp_proposals = aes256gcm16-ecp384
                replay_window = 128
                rekey_bytes = 500000000
            }}
        }}
    }}
}}
secrets {{
    ike {{
        id-a = @gw6.example.net
        id-b = @peer6.example.net
        secret = "{SECRET_B64}"
    }}
}}
"""

ROAD_WARRIOR = """\
connections {
    # certificate site, imported
    partner {
        remote_addrs = 203.0.113.10
        local {
            auth = pubkey
            certs = gw.pem
            id = "C=US, O=Example, CN=gw.example.com"
        }
        remote {
            auth = pubkey
            id = "C=US, O=Example, CN=partner.example.com"
            revocation = strict
        }
        children {
            partner-net {
                local_ts = 198.51.100.0/24
                remote_ts = 192.0.2.128/25
                esp_proposals = aes256gcm16-ecp384, default
            }
        }
    }
    # EAP road warriors: relayed to RADIUS when the import names a server
    rw-eap {
        pools = rw-pool
        local {
            auth = pubkey
            certs = gw.pem
        }
        remote {
            auth = eap-mschapv2
            eap_id = %any
        }
        children {
            rw {
                local_ts = 0.0.0.0/0
            }
        }
    }
    legacy {
        version = 1
        remote_addrs = 192.0.2.77
        local {
            auth = psk
        }
        remote {
            auth = psk
        }
    }
}
pools {
    rw-pool {
        addrs = 10.3.0.0/24
    }
}
authorities {
    example-ca {
        cacert = ca.pem
        crl_uris = http://crl.example.com/ca.crl
        cert_uri_base = http://certs.example.com/
    }
}
secrets {
    eap-carol {
        id = carol
        secret = "carol-password"
    }
}
"""

INCLUDES_MAIN = """\
connections {
    include conf.d/*.conf
}
include secrets.d/*.secrets
"""
INCLUDED_CONN = """\
tunnel-a : connections.defaults {
    remote_addrs = 192.0.2.20
    remote {
        auth = psk
        id = a.example.org
    }
    children {
        a {
            local_ts = 198.51.100.0/28
            remote_ts = 198.51.100.16/28
            esp_proposals = aes128gcm16-ecp256
        }
    }
}
"""
INCLUDED_SECRET = f"""\
secrets {{
    ike-a {{
        id = a.example.org
        id-gw = gw.example.org
        secret = {SECRET_HEX}
    }}
}}
"""


def _run(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(main, ["import", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def _unmapped(report: dict[str, Any]) -> dict[str, str]:
    return {u["key"]: u["reason"] for u in report["unmapped"]}


def test_psk_site_to_site_with_two_children_and_a_0x_secret(tmp_path: Path) -> None:
    src = tmp_path / "swanctl" / "swanctl.conf"
    src.parent.mkdir()
    src.write_text(PSK_SITE)
    out = tmp_path / "ikg" / "gateway.toml"
    code, report = _run(str(src), "-o", str(out), "--profile", "pci-dss-4")
    assert report["loaded"] is True and report["connections"] == ["hq-branch"]
    unmapped = _unmapped(report)
    assert set(unmapped) == {"connections.hq-branch.send_certreq",
                             "connections.hq-branch.children.lan.updown"}
    where = {u["key"]: u["where"] for u in report["unmapped"]}
    assert where["connections.hq-branch.send_certreq"] == f"{src}:12"
    data = tomllib.loads(out.read_text())
    conn = data["connections"]["hq-branch"]
    assert conn["rekey_time"] == "8h" and conn["reauth_time"] == "1d" and conn["dpd_delay"] == "30s"
    assert set(conn["children"]) == {"lan", "voice"}
    assert conn["children"]["lan"]["start_action"] == "trap"
    assert conn["children"]["voice"]["dpd_action"] == "restart"
    assert data["secrets"]["ike"]["branch"] == {"ids": ["hq.example.com", "branch.example.com"],
                                                "secret_file": "branch.psk"}
    psk = out.parent / "branch.psk"
    assert psk.read_text() == SECRET_HEX + "\n" and stat.S_IMODE(psk.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert SECRET_HEX not in json.dumps(report) and SECRET_HEX[2:] not in out.read_text()
    # the migration report under pci-dss-4: the SIEM rules fail for any strongSwan file (no such notion)
    rules = {f["rule"] for f in report["findings"]}
    assert "audit.siem-sink" in rules and code == 1
    load_config(out)  # loads as written


def test_ipv6_with_a_quoted_0s_secret_and_two_ike_proposals(tmp_path: Path) -> None:
    src = tmp_path / "swanctl.conf"
    src.write_text(IPV6_PSK)
    out = tmp_path / "gateway.toml"
    _code, report = _run(str(src), "-o", str(out), "--profile", "baseline")
    assert report["loaded"] is True and report["unmapped"] == []
    data = tomllib.loads(out.read_text())
    conn = data["connections"]["v6"]
    assert conn["local_addrs"] == ["2001:db8:1::1"]
    assert conn["proposals"] == ["aes256gcm16-prfsha384-ecp384", "aes256-sha384-ecp384"]
    assert conn["children"]["net6"] == {"local_ts": ["2001:db8:10::/48"], "remote_ts": ["2001:db8:20::/48"],
                                        "esp_proposals": ["aes256gcm16-ecp384"], "replay_window": 128,
                                        "rekey_bytes": 500000000}
    assert data["secrets"]["ike"]["default"]["ids"] == ["@gw6.example.net", "@peer6.example.net"]
    assert (tmp_path / "default.psk").read_text() == SECRET_B64 + "\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A swanctl directory as an operator makes it with `pki`: x509ca/ca.pem, x509/gw.pem, private/gw.pem."""
    if shutil.which("pki") is None:
        pytest.skip("strongSwan's pki tool is not installed")
    work = tmp_path_factory.mktemp("pki")
    tool = PkiTool(work / "tool")
    ca = tool.self_signed_ca("ca", "C=US, O=Example, CN=Example Root CA")
    gw = tool.issue("gw", ca, "C=US, O=Example, CN=gw.example.com", sans=["gw.example.com"])
    swanctl = work / "swanctl"
    for sub in ("x509", "x509ca", "private"):
        (swanctl / sub).mkdir(parents=True)
    shutil.copy(ca.cert_path, swanctl / "x509ca" / "ca.pem")
    shutil.copy(gw.cert_path, swanctl / "x509" / "gw.pem")
    shutil.copy(gw.key_path, swanctl / "private" / "some-other-name.key")  # found by its public key
    return swanctl


def test_certificates_eap_ikev1_pools_and_authorities(tmp_path: Path, pki: Path) -> None:
    src = pki / "swanctl.conf"
    src.write_text(ROAD_WARRIOR)
    out = tmp_path / "out" / "gateway.toml"
    _code, report = _run(str(src), "-o", str(out), "--profile", "pci-dss-4")
    assert report["loaded"] is True
    assert report["connections"] == ["partner"] and sorted(report["skipped"]) == ["legacy", "rw-eap"]
    unmapped = _unmapped(report)
    assert "--radius-server" in unmapped["connections.rw-eap.remote.auth"]
    assert "IKEv1" in unmapped["connections.legacy.version"]
    assert "pools" not in unmapped and "authorities.example-ca.cert_uri_base" in unmapped
    assert "secrets.eap-carol" in unmapped
    assert "default" in unmapped["connections.partner.children.partner-net.esp_proposals"]
    assert "carol-password" not in json.dumps(report)
    data = tomllib.loads(out.read_text())
    local = data["connections"]["partner"]["local"]
    assert (out.parent / local["key"]).resolve() == (pki / "private" / "some-other-name.key").resolve()
    assert (out.parent / local["certs"][0]).resolve() == (pki / "x509" / "gw.pem").resolve()
    remote = data["connections"]["partner"]["remote"]
    assert remote["revocation"] == "strict"
    assert [(out.parent / c).resolve() for c in remote["cacerts"]] == [(pki / "x509ca" / "ca.pem").resolve()]
    assert "every CA in x509ca" in unmapped["connections.partner.remote.cacerts"]
    assert data["authorities"]["example-ca"]["crl_uris"] == ["http://crl.example.com/ca.crl"]
    assert data["pools"] == {"rw-pool": {"addrs": "10.3.0.0/24"}}
    load_config(out)


def test_eap_road_warriors_are_relayed_to_the_named_radius_server(tmp_path: Path, pki: Path) -> None:
    """With --radius-server, swanctl's EAP rounds become eap-radius (the method is the RADIUS server's), a
    device certificate + EAP user (remote + remote-2) keeps both rounds, pools and eap_id carry over."""
    src = pki / "swanctl.conf"
    src.write_text(ROAD_WARRIOR.replace("    legacy {", """    staff {
        pools = rw-pool
        local {
            auth = pubkey
            certs = gw.pem
        }
        remote-1 {
            auth = pubkey
            id = *.staff.example.com
            cacerts = ca.pem
        }
        remote-2 {
            auth = eap-ttls
            eap_id = %any
        }
        children {
            staff {
                local_ts = 198.51.100.0/24
            }
        }
    }
    legacy {"""))
    secret = tmp_path / "radius.secret"
    secret.write_text("radius-shared-secret-7f3a\n")
    secret.chmod(0o600)
    out = tmp_path / "out" / "gateway.toml"
    _code, report = _run(str(src), "-o", str(out), "--profile", "baseline", "--radius-server", "192.0.2.250",
                         "--radius-secret-file", str(secret))
    assert report["loaded"] is True, report["findings"]
    assert sorted(report["connections"]) == ["partner", "rw-eap", "staff"]
    unmapped = _unmapped(report)
    assert "RADIUS server's to choose" in unmapped["connections.rw-eap.remote.auth"]
    assert "RADIUS server" in unmapped["secrets.eap-carol"]
    data = tomllib.loads(out.read_text())
    rw = data["connections"]["rw-eap"]
    assert rw["remote"] == {"auth": "eap-radius", "eap_id": "%any"} and rw["pools"] == ["rw-pool"]
    staff = data["connections"]["staff"]
    assert staff["remote"]["auth"] == "pubkey"
    assert staff["remote-2"] == {"auth": "eap-radius", "eap_id": "%any"}
    server = data["radius"]["servers"]["radius1"]
    assert server["address"] == "192.0.2.250"
    assert (out.parent / server["secret_file"]).resolve() == secret.resolve()
    assert "radius-shared-secret" not in out.read_text() + json.dumps(report)
    load_config(out)


def test_includes_section_references_and_a_separate_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "secrets.d").mkdir()
    main_conf = tmp_path / "swanctl.conf"
    main_conf.write_text(INCLUDES_MAIN)
    (tmp_path / "conf.d" / "a.conf").write_text(INCLUDED_CONN)
    (tmp_path / "secrets.d" / "a.secrets").write_text(INCLUDED_SECRET)
    defaults = tmp_path / "defaults.conf"
    defaults.write_text("connections {\n  defaults {\n    local_addrs = 192.0.2.1\n"
                        "    proposals = aes128gcm16-prfsha256-ecp256\n    local {\n      auth = psk\n"
                        "      id = gw.example.org\n    }\n  }\n}\n")
    # the referenced section may come later (strongSwan resolves references lazily)
    combined = tmp_path / "combined.conf"
    combined.write_text(f"include {main_conf.name}\ninclude {defaults.name}\n")
    out = tmp_path / "o" / "gateway.toml"
    _code, report = _run(str(combined), "-o", str(out), "--profile", "baseline")
    assert report["loaded"] is True, report
    assert report["connections"] == ["defaults", "tunnel-a"]
    data = tomllib.loads(out.read_text())
    a = data["connections"]["tunnel-a"]
    assert a["local_addrs"] == ["192.0.2.1"] and a["local"]["id"] == "gw.example.org"  # from `: defaults`
    assert a["remote"]["id"] == "a.example.org"
    assert data["secrets"]["ike"]["a"]["ids"] == ["a.example.org", "gw.example.org"]


def test_output_is_not_overwritten_and_bad_input_exits_2(tmp_path: Path) -> None:
    src = tmp_path / "swanctl.conf"
    src.write_text(IPV6_PSK)
    out = tmp_path / "gateway.toml"
    out.write_text("# mine\n")
    result = CliRunner().invoke(main, ["import", str(src), "-o", str(out)])
    assert result.exit_code == 2 and "exists" in result.output and out.read_text() == "# mine\n"
    src.write_text("connections {\n  broken {\n")
    result = CliRunner().invoke(main, ["import", str(src), "-o", str(tmp_path / "new.toml")])
    assert result.exit_code == 2 and "missing '}'" in result.output


def test_text_report_lists_unmapped_keys_and_findings(tmp_path: Path) -> None:
    src = tmp_path / "swanctl.conf"
    src.write_text(PSK_SITE)
    result = CliRunner().invoke(main, ["import", str(src), "-o", str(tmp_path / "g.toml")])
    assert result.exit_code == 1
    assert "connections.hq-branch.send_certreq = no" in result.output
    assert "profile pci-dss-4: FAIL" in result.output and "audit.siem-sink" in result.output
    assert SECRET_HEX not in result.output


@pytest.mark.parametrize(("text", "expected"), [
    ('a {\n  b = "x # not a comment"  # a comment\n}\n', {"a": {"b": "x # not a comment"}}),
    ('a = "multi\nline"\n', {"a": "multi\nline"}),
    ('a = "esc\\"aped\\\\"\n', {"a": 'esc"aped\\'}),
    ("a {\n}\na {\n  k = 1\n}\n", {"a": {"k": "1"}}),
    ("k = 1\nk = 2\n", {"k": "2"}),
    ("k =\n", {"k": ""}),
    ("s1 {\n  x = 1\n  y = 1\n}\ns2 : s1 {\n  y = 2\n}\n",
     {"s1": {"x": "1", "y": "1"}, "s2": {"x": "1", "y": "2"}}),
    ("a {\n  s2 : a.s1 {\n  }\n  s1 {\n    z = 3\n  }\n}\n", {"a": {"s2": {"z": "3"}, "s1": {"z": "3"}}}),
])
def test_settings_syntax(text: str, expected: dict[str, Any]) -> None:
    assert parse_settings(text)[0] == expected


@pytest.mark.parametrize("text", ["a {\n", "}\n", "a b c\n", 'a = "open\n', "s : nothere {\n}\n",
                                  "a {\n" * 40 + "}\n" * 40])
def test_settings_syntax_errors_name_the_line(text: str) -> None:
    with pytest.raises(SettingsSyntaxError, match=r"<text>:\d+: "):
        parse_settings(text)


def test_ocsp_stapling_mode_is_imported_and_a_bad_one_reported(tmp_path: Path) -> None:
    """swanctl's connections.<conn>.ocsp (RFC 4806) maps to ours; a value it does not know is listed."""
    for value, expected in (("both", "both"), ("Reply", "reply"), ("sometimes", None)):
        (tmp_path / value).mkdir()
        src = tmp_path / value / "swanctl.conf"
        text = IPV6_PSK.replace("        proposals =", f"        ocsp = {value}\n        proposals =", 1)
        src.write_text(text)
        out = tmp_path / value / "gateway.toml"
        _code, report = _run(str(src), "-o", str(out), "--profile", "baseline")
        conn = tomllib.loads(out.read_text())["connections"]["v6"]
        assert conn.get("ocsp") == expected
        assert ("connections.v6.ocsp" in _unmapped(report)) is (expected is None)
