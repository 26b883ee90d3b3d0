"""`ikeguard import ipsec.conf`: strongSwan's legacy format, as operators wrote it for years
(``conn %default``, ``also=`` templates, ``authby=secret`` with ``0x``/``0s`` PSKs in ipsec.secrets,
certificates made with `pki` in ipsec.d, road warriors on ``%defaultroute``, IKEv1 and EAP leftovers,
includes). Each import writes a TOML that loads with the lifetimes charon's stroke plugin would have used,
lists every option it cannot carry over with its file and line, keeps the PSKs out of the report (0600
files, unchanged) and passes ``check`` where the source was compliant."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.policy.importers.ipsec_conf import parse_ipsec_conf, parse_ipsec_secrets
from ikeguard.policy.importers.settings_syntax import SettingsSyntaxError
from ikeguard.policy.loader import load_config
from tests.harness.pki_tool import PkiTool
from tests.harness.starter import starter_conftest

SECRET_HEX = "0x3f2a9b7c1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304a5b6c7d8"
SECRET_B64 = "0sOWFkM2U0ZjVhNmI3YzhkOWUwZjFhMmIzYzRkNWU2ZjdhOGI5YzBkMWUyZjNhNGI1YzY="

SITE = """\
# ipsec.conf - strongSwan IPsec configuration file
config setup
	charondebug="ike 2, knl 1, cfg 0"
	uniqueids=yes

conn %default
	keyexchange=ikev2
	ikelifetime=8h
	lifetime=1h
	margintime=9m
	rekeyfuzz=50%
	dpddelay=30s
	dpdaction=restart
	authby=secret
	mobike=no

conn hq-base
	left=192.0.2.1
	leftid=hq.example.com
	right=192.0.2.2
	rightid=branch.example.com
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!

conn lan
	also=hq-base
	leftsubnet=198.51.100.0/25
	rightsubnet=198.51.100.128/25
	auto=start
	leftfirewall=yes

conn voice
	also=hq-base
	leftsubnet=203.0.113.0/26
	rightsubnet=203.0.113.64/26
	auto=route

conn old-partner
	keyexchange=ikev1
	left=192.0.2.1
	right=192.0.2.9
	auto=add
"""

SITE_SECRETS = f"""\
# /etc/ipsec.secrets - strongSwan IPsec secrets file
hq.example.com branch.example.com : PSK {SECRET_HEX}
192.0.2.1 192.0.2.9 : PSK "ikev1-partner-secret"
"""


def _import(tmp_path: Path, conf: str, secrets: str | None = None, *extra: str,
            name: str = "ipsec.conf") -> tuple[dict[str, Any], dict[str, Any], Path]:
    src = tmp_path / "etc" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(conf)
    if secrets is not None:
        (src.parent / "ipsec.secrets").write_text(secrets)
    out = tmp_path / "gw" / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(src), "-o", str(out), "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.output)
    assert report["loaded"], report
    load_config(out)  # the written file loads on its own
    return report, tomllib.loads(out.read_text()), out


def _unmapped(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {u["key"]: u for u in report["unmapped"]}


def test_psk_site_with_default_also_and_a_0x_secret(tmp_path: Path) -> None:
    report, cfg, out = _import(tmp_path, SITE, SITE_SECRETS, "--profile", "baseline")
    assert report["passed"] and report["exit_code"] == 0, report["findings"]
    # lan and voice share their IKE settings: charon runs them as two children of one IKE SA, so does ikeguard
    assert report["connections"] == ["lan"] and report["skipped"] == ["old-partner"]
    lan = cfg["connections"]["lan"]
    assert list(lan["children"]) == ["lan", "voice"]
    assert lan["local_addrs"] == ["192.0.2.1"] and lan["remote_addrs"] == ["192.0.2.2"]
    assert lan["local"] == {"auth": "psk", "id": "hq.example.com"}
    assert lan["remote"] == {"auth": "psk", "id": "branch.example.com"}
    assert lan["proposals"] == ["aes256gcm16-prfsha384-ecp384"] and lan["mobike"] is False
    assert lan["unique"] == "replace" and lan["dpd_delay"] == 30
    # stroke_config.c: reauth=yes (default) -> reauth at ikelifetime - margintime; jitter = margin * fuzz
    assert (lan["rekey_time"], lan["reauth_time"], lan["over_time"], lan["rand_time"]) == (0, 28260, 540, 270)
    child = lan["children"]["lan"]
    assert child == {"local_ts": ["198.51.100.0/25"], "remote_ts": ["198.51.100.128/25"],
                     "esp_proposals": ["aes256gcm16-ecp384"], "dpd_action": "restart",
                     "rekey_time": 3060, "life_time": 3600, "rand_time": 270, "start_action": "start"}
    assert lan["children"]["voice"]["start_action"] == "trap"
    assert lan["children"]["voice"]["local_ts"] == ["203.0.113.0/26"]
    unmapped = _unmapped(report)
    assert unmapped["conn old-partner.keyexchange"]["reason"].startswith("IKEv1 is not supported")
    assert unmapped["conn old-partner.keyexchange"]["where"].endswith("ipsec.conf:39")
    assert unmapped["conn lan.leftfirewall"]["where"].endswith("ipsec.conf:30")
    assert unmapped["config setup.charondebug"]["where"].endswith("ipsec.conf:3")
    assert unmapped["conn hq-base.auto"]["reason"].startswith("auto=ignore")
    assert unmapped["secrets PSK 192.0.2.1 192.0.2.9"]["where"].endswith("ipsec.secrets:3")
    # the PSK: its own 0600 file, unchanged; the IKEv1 partner's too (ids only), never in the report
    [(_label, entry), *_] = cfg["secrets"]["ike"].items()
    assert entry["ids"] == ["hq.example.com", "branch.example.com"]
    secret_file = out.parent / entry["secret_file"]
    assert secret_file.read_text() == SECRET_HEX + "\n"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    text = json.dumps(report) + out.read_text()
    assert SECRET_HEX not in text and "ikev1-partner-secret" not in text


ROAD_WARRIOR = """\
config setup
	uniqueids=never

conn %default
	keyexchange=ikev2
	ike=aes256gcm16-prfsha384-ecp384,aes256-sha384-ecp384
	esp=aes256gcm16-ecp384
	dpdaction=clear
	dpddelay=300s
	rekey=no
	fragmentation=yes
	forceencaps=yes

conn rw-cert
	left=%defaultroute
	leftid=@vpn.example.com
	leftcert=gw.pem
	leftsendcert=always
	leftsubnet=0.0.0.0/0
	right=%any
	rightauth=pubkey
	rightca=%same
	rightsourceip=10.10.0.0/24
	rightdns=198.51.100.53
	auto=add

conn rw-eap
	also=rw-cert
	rightauth=eap-mschapv2
	eap_identity=%identity
	auto=add

conn partner
	left=%defaultroute
	leftid=@vpn.example.com
	leftcert=gw.pem
	right=203.0.113.7
	rightid="C=CH, O=Partner, CN=vpn.partner.example"
	rightca="C=CH, O=ss-lab, CN=ss-lab Root CA"
	rightsubnet=203.0.113.128/25
	esp=aes256gcm16-ecp384!
	auto=add

conn bypass-lan
	leftsubnet=192.0.2.0/24
	rightsubnet=192.0.2.0/24
	type=passthrough
	auto=route
"""


@pytest.fixture(scope="module")
def ipsec_d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/etc/ipsec.d as an operator fills it with `pki`: cacerts/ca.pem, certs/gw.pem, private/gw.key."""
    if shutil.which("pki") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strongSwan's pki tool is not installed (strongswan-pki)")
        pytest.skip("strongSwan's pki tool is not installed")
    work = tmp_path_factory.mktemp("pki")
    tool = PkiTool(work / "tool")
    ca = tool.self_signed_ca("ca", "C=CH, O=ss-lab, CN=ss-lab Root CA")
    gw = tool.issue("gw", ca, "C=CH, O=ss-lab, CN=vpn.example.com", sans=["vpn.example.com"])
    etc = work / "etc"
    for sub in ("cacerts", "certs", "private"):
        (etc / "ipsec.d" / sub).mkdir(parents=True)
    shutil.copy(ca.cert_path, etc / "ipsec.d" / "cacerts" / "ca.pem")
    other = tool.self_signed_ca("other", "C=CH, O=elsewhere, CN=Other Root CA")
    shutil.copy(other.cert_path, etc / "ipsec.d" / "cacerts" / "aaa-other.pem")  # sorts first
    shutil.copy(gw.cert_path, etc / "ipsec.d" / "certs" / "gw.pem")
    shutil.copy(gw.key_path, etc / "ipsec.d" / "private" / "gw.key")
    return etc / "ipsec.d"


def test_road_warrior_gateway_with_certificates_eap_and_passthrough(tmp_path: Path, ipsec_d: Path) -> None:
    shutil.copytree(ipsec_d, tmp_path / "etc" / "ipsec.d")
    report, cfg, out = _import(tmp_path, ROAD_WARRIOR, ": RSA gw.key\n", "--profile", "baseline")
    assert report["connections"] == ["partner", "rw-cert"]
    assert set(report["skipped"]) == {"rw-eap", "bypass-lan"}
    assert report["passed"], report["findings"]
    rw = cfg["connections"]["rw-cert"]
    assert "local_addrs" not in rw and rw["remote_addrs"] == ["%any"]  # %defaultroute: the left side is us
    assert rw["local"]["id"] == "@vpn.example.com" and rw["local"]["auth"] == "pubkey"
    etc = tmp_path / "etc" / "ipsec.d"
    assert (out.parent / rw["local"]["certs"][0]).resolve() == (etc / "certs" / "gw.pem").resolve()
    assert (out.parent / rw["local"]["key"]).resolve() == (etc / "private" / "gw.key").resolve()
    assert [(out.parent / c).resolve() for c in rw["remote"]["cacerts"]] == [(etc / "cacerts" / "ca.pem")
                                                                             .resolve()]
    # rightca=%same: the issuer of our certificate; rightca="DN": the CA with that subject (not aaa-other.pem)
    partner = cfg["connections"]["partner"]
    assert [(out.parent / c).resolve() for c in partner["remote"]["cacerts"]] == [(etc / "cacerts" / "ca.pem")
                                                                                  .resolve()]
    assert partner["remote"]["id"] == "C=CH, O=Partner, CN=vpn.partner.example"
    assert rw["proposals"] == ["aes256gcm16-prfsha384-ecp384", "aes256-sha384-ecp384"]
    assert rw["unique"] == "never" and rw["fragmentation"] == "yes" and rw["encap"] is True
    assert rw["rekey_time"] == 0 and rw["children"]["rw-cert"]["rekey_time"] == 0  # rekey=no
    assert rw["dpd_delay"] == 300 and rw["children"]["rw-cert"]["dpd_action"] == "clear"
    assert rw["children"]["rw-cert"]["local_ts"] == ["0.0.0.0/0"]
    unmapped = _unmapped(report)
    for key in ("conn rw-cert.ike", "conn rw-cert.esp"):  # not strict: strongSwan would add its defaults
        assert "trailing '!'" in unmapped[key]["reason"]
    assert not any(k.endswith("rightca") for k in unmapped)
    assert "virtual IPs" in unmapped["conn rw-cert.rightsourceip"]["reason"]
    assert "conn rw-cert.rightdns" in unmapped and "conn rw-cert.leftsendcert" in unmapped
    assert "not imported" in unmapped["conn bypass-lan.type"]["reason"]
    assert "EAP" in unmapped["connections.rw-eap.remote.auth"]["reason"]  # refused by the shared converter
    assert "secret_files" in report and report["secret_files"] == []


IPV6 = """\
include ipsec.d/conns/*.conf
"""

IPV6_CONN = """\
conn v6
	left=2001:db8:1::1
	leftsubnet=2001:db8:a::/48
	right=2001:db8:2::1
	rightid=@gw6.example.net
	rightsubnet=2001:db8:b::/48
	leftid=@peer6.example.net
	authby=psk
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!
	ikelifetime=12h
	keylife=2h
	rekeymargin=10m
	reauth=no
	closeaction=restart
	auto=route
"""


def test_ipv6_include_right_is_us_and_a_0s_secret(tmp_path: Path) -> None:
    conns = tmp_path / "etc" / "ipsec.d" / "conns"
    conns.mkdir(parents=True)
    (conns / "v6.conf").write_text(IPV6_CONN)
    secrets = f'@gw6.example.net @peer6.example.net : PSK {SECRET_B64}\n'
    report, cfg, out = _import(tmp_path, IPV6, secrets, "--local", "2001:db8:2::1", "--profile", "baseline")
    assert report["passed"] and report["connections"] == ["v6"], report
    v6 = cfg["connections"]["v6"]
    assert v6["local_addrs"] == ["2001:db8:2::1"] and v6["remote_addrs"] == ["2001:db8:1::1"]
    assert v6["local"]["id"] == "@gw6.example.net" and v6["remote"]["id"] == "@peer6.example.net"
    child = v6["children"]["v6"]
    assert child["local_ts"] == ["2001:db8:b::/48"] and child["remote_ts"] == ["2001:db8:a::/48"]
    assert child["start_action"] == "trap" and child["close_action"] == "start"
    # reauth=no: ikelifetime - margin is a rekey, not a reauthentication
    assert (v6["rekey_time"], v6.get("reauth_time", 0), child["rekey_time"], child["life_time"]) == (
        42600, 0, 6600, 7200)
    assert {u["key"] for u in report["unmapped"]} == set()  # everything of conn v6 (from the include) maps
    [entry] = cfg["secrets"]["ike"].values()
    assert (out.parent / entry["secret_file"]).read_text() == SECRET_B64 + "\n"
    # the same file seen from the other side: --local left
    report2, cfg2, _ = _import(tmp_path / "again", IPV6_CONN, None, "--local", "left", "--profile",
                               "baseline", "--secrets", str(tmp_path / "etc" / "ipsec.secrets"))
    assert cfg2["connections"]["v6"]["local_addrs"] == ["2001:db8:1::1"] and report2["passed"]


def test_a_weak_ipsec_conf_gets_the_profile_findings(tmp_path: Path) -> None:
    weak = SITE.replace("aes256gcm16-prfsha384-ecp384!", "3des-sha1-modp1024!")
    report, _, _ = _import(tmp_path, weak, SITE_SECRETS, "--profile", "baseline")
    assert not report["passed"] and report["exit_code"] == 1
    failed = {(f["rule"], f["where"]) for f in report["findings"] if f.get("status") == "fail"}
    assert failed == {(rule, "connections.lan.proposals[0]")
                      for rule in ("crypto.ike.encr", "crypto.ike.prf", "crypto.ike.integ", "crypto.ike.ke")}


def test_format_is_found_by_content_or_forced(tmp_path: Path) -> None:
    report, _, _ = _import(tmp_path, SITE, SITE_SECRETS, "--profile", "baseline", name="hq.txt")
    assert report["connections"] == ["lan"]
    src = tmp_path / "etc" / "hq.txt"
    result = CliRunner().invoke(main, ["import", str(src), "-o", str(tmp_path / "x.toml"), "--format",
                                       "swanctl"])
    assert result.exit_code == 2  # not settings syntax


@pytest.mark.parametrize("text", [
    "\tleft=192.0.2.1\n",                          # option outside a section
    "conn a\n\tleft\n",                            # not key=value
    "conn a\n\talso=b\n\tauto=add\n",              # unknown also=
    "conn a\n\talso=b\n\tauto=add\nconn b\n\talso=a\n",  # also= loop
    "frobnicate\n",
])
def test_errors_name_the_line_and_exit_2(tmp_path: Path, text: str) -> None:
    src = tmp_path / "ipsec.conf"
    src.write_text(text)
    result = CliRunner().invoke(main, ["import", str(src), "-o", str(tmp_path / "gw.toml")])
    assert result.exit_code == 2 and "ipsec.conf:" in result.output, result.output
    assert not (tmp_path / "gw.toml").exists()


@pytest.mark.parametrize("name", ["SITE", "ROAD_WARRIOR", "IPV6_CONN"])
def test_the_corpus_is_ipsec_conf_as_strongswan_parses_it(tmp_path: Path, name: str) -> None:
    """strongSwan's own parser (starter --conftest) finds no error in the files imported above."""
    conf = tmp_path / "ipsec.conf"
    conf.write_text(globals()[name])
    output = starter_conftest(conf)
    assert "error" not in output.lower() and "config OK" in output, output


def test_parsers() -> None:
    [setup, conn] = parse_ipsec_conf('config setup\n  strictcrlpolicy=no\nconn x # c\n  leftid="C=CH, CN=a b"'
                                     "\n  left=192.0.2.1 # comment\n")
    assert setup.kind == "config" and conn.name == "x"
    assert conn.options["leftid"][0] == "C=CH, CN=a b" and conn.options["left"][0] == "192.0.2.1"
    entries = parse_ipsec_secrets(': PSK "a b"\n"C=CH, CN=x" 192.0.2.1 : PSK\n  0x0102\n: RSA k.pem "pw"\n')
    assert [(e.ids, e.kind, e.value) for e in entries[:2]] == [
        ([], "PSK", "a b"), (["C=CH, CN=x", "192.0.2.1"], "PSK", "0x0102")]
    assert entries[2].kind == "RSA"
    with pytest.raises(SettingsSyntaxError):
        parse_ipsec_secrets("no separator here\n")


ROUNDS = """\
# road warriors: device certificate, then the user with EAP (RFC 4739); CAs with their CRL/OCSP servers
ca %default
	auto=add

ca lab
	cacert=ca.pem
	crluri=http://crl.example.com/lab.crl
	crluri2="ldap://ldap.example.com/cn=lab?certificateRevocationList"
	ocspuri=http://ocsp.example.com/
	certuribase=http://certs.example.com/

ca retired
	cacert=aaa-other.pem
	auto=ignore

conn rw-device-user
	keyexchange=ikev2
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!
	left=%defaultroute
	leftcert=gw.pem
	leftid=@vpn.example.com
	leftsubnet=198.51.100.0/25
	leftauth2=psk
	right=%any
	rightauth=pubkey
	rightca="C=CH, O=ss-lab, CN=ss-lab Root CA"
	rightauth2=eap-mschapv2
	rightid2=%any
	eap_identity=%identity
	auto=add

conn rw-eap-only
	keyexchange=ikev2
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!
	left=%defaultroute
	leftcert=gw.pem
	leftid=@vpn.example.com
	leftsubnet=198.51.100.0/25
	right=%any
	rightid="*@example.com"
	rightauth=eap-md5
	eap_identity=carol@example.com
	auto=add

conn site
	keyexchange=ikev2
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!
	left=192.0.2.1
	leftcert=gw.pem
	leftid=@vpn.example.com
	right=192.0.2.9
	rightid=@partner.example.net
	rightca="C=CH, O=ss-lab, CN=ss-lab Root CA"
	eap_identity=%identity
	auto=add
"""


def test_second_rounds_eap_identity_and_ca_sections(tmp_path: Path, ipsec_d: Path) -> None:
    shutil.copytree(ipsec_d, tmp_path / "etc" / "ipsec.d")
    secret = tmp_path / "radius.secret"
    secret.write_text("ipsec-conf-radius-secret-0123\n")
    secret.chmod(0o600)
    report, cfg, out = _import(tmp_path, ROUNDS, ": RSA gw.key\n", "--profile", "baseline",
                               "--radius-server", "192.0.2.250", "--radius-secret-file", str(secret))
    assert report["connections"] == ["rw-device-user", "rw-eap-only", "site"], report
    device = cfg["connections"]["rw-device-user"]
    assert device["remote"]["auth"] == "pubkey"
    # rightauth2 / rightid2 / eap_identity=%identity: the user's EAP round, relayed to RADIUS
    assert device["remote-2"] == {"auth": "eap-radius", "id": "%any", "eap_id": "%any"}
    eap_only = cfg["connections"]["rw-eap-only"]
    assert eap_only["remote"]["auth"] == "eap-radius" and eap_only["remote"]["eap_id"] == "carol@example.com"
    assert "remote-2" not in cfg["connections"]["site"]
    # ca lab -> [authorities.lab] with its CRL and OCSP URIs; ca retired (auto=ignore) is not imported
    lab = cfg["authorities"]["lab"]
    ca_file = tmp_path / "etc" / "ipsec.d" / "cacerts" / "ca.pem"
    assert (out.parent / lab["cacert"]).resolve() == ca_file.resolve()
    assert lab["crl_uris"] == ["http://crl.example.com/lab.crl",
                               "ldap://ldap.example.com/cn=lab?certificateRevocationList"]
    assert lab["ocsp_uris"] == ["http://ocsp.example.com/"]
    assert list(cfg["authorities"]) == ["lab"]
    unmapped = _unmapped(report)
    assert "hash-and-URL" in unmapped["ca lab.certuribase"]["reason"]
    assert "auto=ignore" in unmapped["ca retired.auto"]["reason"]
    assert "of our own" in unmapped["conn rw-device-user.leftauth2"]["reason"]
    assert "no EAP round of the peer" in unmapped["conn site.eap_identity"]["reason"]
    for key in ("conn rw-device-user.eap_identity", "conn rw-device-user.rightauth2",
                "conn rw-eap-only.eap_identity"):
        assert key not in unmapped
    assert report["passed"], report["findings"]
