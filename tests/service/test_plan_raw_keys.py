"""Raw public keys in the configuration (RFC 7670, issue 18): ``local.pubkeys`` / ``remote.pubkeys`` as
swanctl.conf names them; the plan pins the peer's keys (files or ``sha256:`` fingerprints), checks that our
public key is our private key's, and ``check`` reports raw-key connections under profiles that want
certificates with revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.engine.settings import AuthKind
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import load_profile
from ikeguard.policy.report import evaluate
from ikeguard.service.plan import ConfigRefused, build_plan

CONFIG = """
[gateway]
profile = "{profile}"
[connections.lab]
remote_addrs = ["192.0.2.2"]
[connections.lab.local]
auth = "pubkey"
id = "gw.example.net"
key = "gw.key"
pubkeys = ["{own}"]
[connections.lab.remote]
auth = "pubkey"
id = "client.example.net"
pubkeys = {pins}
[connections.lab.children.net]
local_ts = ["198.51.100.0/25"]
remote_ts = ["198.51.100.128/25"]
"""


def _setup(tmp_path: Path, *, profile: str = "baseline", own: str = "gw.pub", pins: str = '["client.pub"]'
           ) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    gw, client, other = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    (tmp_path / "gw.key").write_bytes(gw.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "gw.key").chmod(0o600)
    for name, key in (("gw.pub", gw), ("client.pub", client), ("other.pub", other)):
        (tmp_path / name).write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "gw.toml").write_text(CONFIG.format(profile=profile, own=own, pins=pins))
    return tmp_path / "gw.toml", client


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_raw_key_connection_pins_files_and_fingerprints(tmp_path: Path) -> None:
    path, client = _setup(tmp_path)
    spki = client.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).digest()
    path.write_text(path.read_text().replace('pubkeys = ["client.pub"]',
                                             f'pubkeys = ["client.pub", "sha256:{digest.hex()}"]'))
    plan = build_plan(path, now=_now())
    conn = plan.connections["lab"]
    assert conn.local.kind is AuthKind.PUBKEY and conn.local.raw_public_key and not conn.local.certs
    assert [p.fingerprint for p in conn.remote.pubkeys] == [digest, digest]
    assert conn.remote.pubkeys[0].public_key is not None and conn.remote.pubkeys[1].public_key is None
    assert "lab" not in plan.validator.connections  # nothing for the certificate validator


@pytest.mark.parametrize(("own", "pins", "where", "text"), [
    ("other.pub", '["client.pub"]', "connections.lab.local.pubkeys[0]", "not the one of local.key"),
    ("gw.pub", '["absent.pub"]', "connections.lab.remote.pubkeys[0]", "cannot read the public key file"),
    ("gw.pub", '["sha256:abcd"]', "connections.lab.remote.pubkeys[0]", "a SHA-256 fingerprint has 32 octets"),
    ("gw.pub", '["gw.key"]', "connections.lab.remote.pubkeys[0]", "not a PEM public key"),
])
def test_bad_raw_keys_are_named_at_start(own: str, pins: str, where: str, text: str, tmp_path: Path) -> None:
    path, _ = _setup(tmp_path, own=own, pins=pins)
    with pytest.raises(ConfigRefused) as refused:
        build_plan(path, now=_now())
    found = [f for f in refused.value.findings if f.path == where]
    assert found and text in found[0].message, refused.value.findings


def test_pubkeys_and_cacerts_exclude_each_other(tmp_path: Path) -> None:
    path, _ = _setup(tmp_path)
    path.write_text(path.read_text().replace('pubkeys = ["client.pub"]',
                                             'pubkeys = ["client.pub"]\ncacerts = ["ca.pem"]'))
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    assert '"pubkeys" and "cacerts" exclude each other' in str(failed.value.findings)


def test_check_reports_raw_keys_under_a_profile_that_wants_certificates(tmp_path: Path) -> None:
    path, _ = _setup(tmp_path, profile="pci-dss-4")
    report = evaluate(load_config(path), load_profile("pci-dss-4"), now=_now())
    failed = {r.scope: r.message for r in report.by_status("fail") if r.rule.id == "revocation.configured"}
    assert "raw public keys (RFC 7670)" in failed["connections.lab.remote.pubkeys"]
    assert "raw public key (RFC 7670)" in failed["connections.lab.local.pubkeys"]
    baseline = evaluate(load_config(path), load_profile("baseline"), now=_now())
    assert not [r for r in baseline.by_status("fail") if "pubkeys" in r.scope]
