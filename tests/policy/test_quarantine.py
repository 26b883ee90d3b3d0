"""on_violation = "quarantine": only the offending connection or inventory peer is disabled."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

import pytest

from ikeguard.policy.enforce import enforce
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.identity import parse_identity
from ikeguard.policy.loader import load_config
from ikeguard.policy.selection import select_connection
from ikeguard.tools.certfactory import CertificateAuthority

HEX256 = "0x" + "5a17" * 16

CONN = """
[connections.{name}]
local_addrs = ["192.0.2.1"]
remote_addrs = ["{addr}"]
proposals = ["{proposal}"]
rekey_time = "12h"
reauth_time = "24h"
rand_time = "30m"
dpd_delay = "30s"
local = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk", id = "{remote_id}"{peers} }}
[connections.{name}.children.data]
local_ts = ["10.10.0.0/24"]
remote_ts = ["{remote_ts}"]
esp_proposals = ["aes256gcm16-ecp384"]
rekey_time = "1h"
life_time = "2h"
rand_time = "5m"
"""

HEAD = """
[gateway]
profile = "pci-dss-4"
on_violation = "quarantine"
[[audit.sinks]]
type = "syslog-tls"
address = "127.0.0.1:6514"
ca = "siem-ca.pem"
cert = "gw-siem.pem"
key = "gw-siem.key"
"""


def _secret(tmp_path: Path, name: str, ident: str) -> str:
    path = tmp_path / f"{name}.psk"
    path.write_text("0x" + hashlib.sha256(name.encode()).hexdigest() + "\n")  # own key per peer (psk.binding)
    path.chmod(0o600)
    return f'\n[secrets.ike.{name}]\nids = ["{ident}"]\nsecret_file = "{name}.psk"\n'


def _with_certificates(tmp_path: Path, body: str, now: dt.datetime) -> str:
    """``body``'s connection authenticated with certificates (lab CA with a CRL URI) instead of PSKs."""
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=365)
    ca = CertificateAuthority.create_root("CN=quarantine lab CA", not_before=start, not_after=end)
    gw = ca.issue_leaf("CN=gw.example", sans=["gw.example"], not_before=start, not_after=end)
    (tmp_path / "ca.pem").write_bytes(ca.issued.cert_pem())
    (tmp_path / "gw.pem").write_bytes(gw.cert_pem())
    (tmp_path / "gw.key").write_bytes(gw.key_pem())
    (tmp_path / "gw.key").chmod(0o600)
    body = body.replace('local = { auth = "psk", id = "gw.example" }',
                        'local = { auth = "pubkey", id = "gw.example", certs = ["gw.pem"], key = "gw.key" }')
    body = body.replace('remote = { auth = "psk",', 'remote = { auth = "pubkey", cacerts = ["lab"], '
                        'revocation = "strict",')
    return body + '\n[authorities.lab]\ncacert = "ca.pem"\ncrl_uris = ["http://192.0.2.10/lab.crl"]\n'


def _config(tmp_path: Path, body: str) -> Path:
    now = dt.datetime.now(dt.UTC)  # the SIEM link's certificates are judged too (audit.siem-tls, key.*)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=365)
    ca = CertificateAuthority.create_root("CN=quarantine SIEM CA", not_before=start, not_after=end)
    client = ca.issue_leaf("CN=gw audit client", sans=["gw.example"], eku=["clientAuth"], not_before=start,
                           not_after=end)
    (tmp_path / "siem-ca.pem").write_bytes(ca.issued.cert_pem())
    (tmp_path / "gw-siem.pem").write_bytes(client.cert_pem())
    (tmp_path / "gw-siem.key").write_bytes(client.key_pem())
    (tmp_path / "gw-siem.key").chmod(0o600)  # key.file-mode
    path = tmp_path / "gw.toml"
    path.write_text(HEAD + body)
    return path


def test_weak_connection_quarantined_others_run(tmp_path: Path, now: dt.datetime) -> None:
    body = CONN.format(name="good", addr="198.51.100.1", proposal="aes256gcm16-prfsha384-ecp384",
                       remote_id="good.example", peers="", remote_ts="10.30.1.0/24")
    body += CONN.format(name="legacy", addr="198.51.100.2", proposal="3des-sha256-modp3072",
                        remote_id="legacy.example", peers="", remote_ts="10.30.2.0/24")
    body += _secret(tmp_path, "good", "good.example") + _secret(tmp_path, "legacy", "legacy.example")
    config = load_config(_config(tmp_path, body))
    result = enforce(config, now=now)
    assert set(result.quarantined_connections) == {"legacy"}
    assert [r.rule.id for r in result.quarantined_connections["legacy"]] == ["crypto.ike.encr"]
    assert config.enabled_connections() == ["good"]
    assert "crypto.ike.encr" in config.disabled_connections["legacy"]
    match = select_connection(config.model.connections, parse_identity("legacy.example"),
                              disabled=config.disabled_connections)
    assert match is None
    match = select_connection(config.model.connections, parse_identity("good.example"),
                              disabled=config.disabled_connections)
    assert match is not None and match.name == "good"


def test_overlapping_inventory_peer_quarantined_others_stay(tmp_path: Path, now: dt.datetime) -> None:
    (tmp_path / "peers.toml").write_text("""
[[peer]]
id = "a.m.example"
remote_ts = ["10.20.1.0/24"]
[[peer]]
id = "b.m.example"
remote_ts = ["10.20.2.0/24"]
[[peer]]
id = "c.m.example"
remote_ts = ["10.20.1.0/25"]
""")
    body = CONN.format(name="merchants", addr="%any", proposal="aes256gcm16-prfsha384-ecp384",
                       remote_id="*.m.example", peers=', peers = "peers.toml"', remote_ts="%peer")
    body = _with_certificates(tmp_path, body, now)  # a pattern remote id with PSK is refused (psk.binding)
    config = load_config(_config(tmp_path, body))
    result = enforce(config, now=now)
    assert set(result.quarantined_peers) == {("merchants", "c.m.example")}
    assert not result.quarantined_connections
    inventory = config.inventories["merchants"]
    assert inventory.lookup(parse_identity("c.m.example")) is None
    assert inventory.bound_selectors(parse_identity("a.m.example")) is not None
    assert inventory.bound_selectors(parse_identity("b.m.example")) is not None
    match = select_connection(config.model.connections, parse_identity("b.m.example"),
                              inventories=config.inventories)
    assert match is not None and match.peer is not None and match.peer.id == "b.m.example"


def test_gateway_wide_failure_cannot_be_quarantined(tmp_path: Path, now: dt.datetime) -> None:
    body = CONN.format(name="good", addr="198.51.100.1", proposal="aes256gcm16-prfsha384-ecp384",
                       remote_id="good.example", peers="", remote_ts="10.30.1.0/24")
    body += _secret(tmp_path, "good", "good.example") + "\n[audit]\nretention_days = 30\n"
    config = load_config(_config(tmp_path, body))
    with pytest.raises(ConfigError) as info:
        enforce(config, now=now)
    assert [f.rule for f in info.value.findings] == ["audit.retention"]


def test_compliant_config_passes(tmp_path: Path, now: dt.datetime) -> None:
    body = CONN.format(name="good", addr="198.51.100.1", proposal="aes256gcm16-prfsha384-ecp384",
                       remote_id="good.example", peers="", remote_ts="10.30.1.0/24")
    body += _secret(tmp_path, "good", "good.example")
    config = load_config(_config(tmp_path, body))
    result = enforce(config, now=now)
    assert not result.quarantined_connections and not result.quarantined_peers
    assert result.not_implemented == []
    assert result.report.passed
    assert not result.report.by_status("fail")


def test_quarantine_in_5000_peers_takes_out_exactly_the_later_overlapping_entries(
        tmp_path: Path, now: dt.datetime) -> None:
    """Issue 17: a late /16 used to be judged by address order, which made it the 'earlier' entry of each of
    the 256 /24s it covers and quarantined all of them. File order (docs/compliance.md): the later entry of
    an overlap with a kept entry is the offender; an entry overlapping only an offender stays."""
    entries = [(f"p{i}.m.example", f"10.{i // 256}.{i % 256}.0/24") for i in range(5000)]
    entries.insert(100, ("mid.m.example", "10.0.50.0/25"))  # inside p50's /24, later in the file
    entries += [
        ("wide.m.example", "10.1.0.0/16"),  # covers p256..p511: the only offender of those overlaps
        ("dup.m.example", "10.2.5.0/24"),  # p517's subnet again
        ("fresh.m.example", "10.19.200.0/24"),  # beyond the /24s: overlaps nothing, kept
        ("late18.m.example", "10.19.192.0/18"),  # overlaps fresh (kept): offender
        ("chain.m.example", "10.19.210.0/24"),  # overlaps only late18, an offender: kept
    ]
    (tmp_path / "peers.toml").write_text("".join(f'[[peer]]\nid = "{i}"\nremote_ts = ["{ts}"]\n'
                                                 for i, ts in entries))
    body = CONN.format(name="merchants", addr="%any", proposal="aes256gcm16-prfsha384-ecp384",
                       remote_id="*.m.example", peers=', peers = "peers.toml"', remote_ts="%peer")
    config = load_config(_config(tmp_path, _with_certificates(tmp_path, body, now)))
    started = time.perf_counter()
    result = enforce(config, now=now)
    elapsed = time.perf_counter() - started
    offenders = {"mid.m.example", "wide.m.example", "dup.m.example", "late18.m.example"}
    assert {peer for _, peer in result.quarantined_peers} == offenders
    assert not result.quarantined_connections
    inventory = config.inventories["merchants"]
    enabled = {p.id for p in inventory.peers if p.enabled}
    assert enabled == {i for i, _ in entries} - offenders  # 5,002 peers still served
    assert len(enabled) == 5002
    assert inventory.bound_selectors(parse_identity("p300.m.example")) is not None
    assert inventory.bound_selectors(parse_identity("chain.m.example")) is not None
    assert elapsed < 30, elapsed  # one sweep, not a pairwise comparison
