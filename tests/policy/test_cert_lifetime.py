"""Short-lived certificates (issue 18): ``cert.lifetime`` fails our device certificate when its lifetime is
above the profile's limit (398 days in the regulated profiles); ``pki.expiring``: tests/service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import load_profile
from ikeguard.policy.report import evaluate
from tests.pki.certs import issue

CONFIG = """
[gateway]
profile = "pci-dss-4"
[connections.lab]
remote_addrs = ["192.0.2.2"]
[connections.lab.local]
auth = "pubkey"
certs = ["gw.pem"]
key = "gw.key"
[connections.lab.remote]
auth = "pubkey"
id = "client.example.net"
cacerts = ["ca.pem"]
[connections.lab.children.net]
local_ts = ["198.51.100.0/25"]
remote_ts = ["198.51.100.128/25"]
"""


def _cert(tmp_path: Path, now: dt.datetime, life: dt.timedelta) -> None:
    ca = issue("CN=Lab CA", ca=True, not_before=now - dt.timedelta(days=1),
               not_after=now + dt.timedelta(days=3650))
    start = now - dt.timedelta(hours=1)
    gw = issue("CN=gw.example.net", ca, not_before=start, not_after=start + life)
    (tmp_path / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "gw.pem").write_bytes(gw.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "gw.key").write_bytes(gw.key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (tmp_path / "gw.key").chmod(0o600)
    (tmp_path / "gw.toml").write_text(CONFIG)


@pytest.mark.parametrize(("life", "ok"), [(dt.timedelta(days=730), False), (dt.timedelta(hours=24), True)])
def test_cert_lifetime_against_the_profile_limit(life: dt.timedelta, ok: bool, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    _cert(tmp_path, now, life)
    report = evaluate(load_config(tmp_path / "gw.toml"), load_profile("pci-dss-4"), now=now)
    results = [r for r in report.results if r.rule.id == "cert.lifetime"]
    assert [r.status for r in results] == (["pass"] if ok else ["fail"]), results
    if not ok:
        assert "lifetime 730 d is above the profile's limit of 398 d" in results[0].message
    baseline = evaluate(load_config(tmp_path / "gw.toml"), load_profile("baseline"), now=now)
    assert not [r for r in baseline.results if r.rule.id == "cert.lifetime"]  # baseline has no limit
