"""Issue 24, Done-when 1 and 2 with records from a real run: `ikeguard run` against strongSwan 5.9 (ECDSA
certificates made with strongSwan's `pki`), the Child SA rekeyed twice and the IKE SA once by strongSwan, the
gateway scanned with `ikeguard scan`; then `ikeguard evidence` on the gateway's own trail. The pack's crypto
inventory holds exactly the suites strongSwan reported for those SAs, its certificate inventory exactly
strongSwan's certificate (key type and expiry as issued), its connection records exactly the SAs made, the
scan is included, and `ikeguard evidence verify` passes offline with the trail's verification key."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.audit.store import rfc3339
from ikeguard.crypto.key_names import describe_key
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.interop_pair import CONN
from tests.harness.interop_scenarios import SUITES, PairSpec, start_pair
from tests.harness.plugin import CLIENT_FQDN
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.date_sensitive]

SUITE = SUITES["gcm"]


def _ikeguard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ikeguard", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


def test_pack_of_a_run_against_strongswan(netns_topology: Callable[..., Topology],
                                          strongswan_peer: Callable[..., StrongSwanPeer],
                                          ikeguard_gateway: Callable[..., GatewayProcess],
                                          tmp_path: Path) -> None:
    began = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    spec = PairSpec("responder", "ecdsa", SUITE)
    pair = start_pair(netns_topology, strongswan_peer, ikeguard_gateway, spec)
    pair.initiate()
    ss, _ikg = pair.settled()
    seen_by_strongswan = {f"ike:{ss.proposal}", f"esp:{ss.child('net').proposal}"}
    ike_sas, child_sas = 1, 1
    for _ in range(2):  # strongSwan rekeys the Child SA (CREATE_CHILD_SA with PFS, RFC 7296 §1.3.3)
        before = ss.child("net").uniqueid
        assert pair.peer.rekey(child="net") == 1
        ss, _ikg = pair.settled(until=lambda s, _i, b=before: s.child("net").uniqueid != b,
                                what="the Child SA rekeyed")
        seen_by_strongswan.add(f"esp:{ss.child('net').proposal}")
        child_sas += 1
    before = ss.uniqueid
    assert pair.peer.rekey(ike=CONN) >= 1  # and the IKE SA (RFC 7296 §2.8)
    ss, _ikg = pair.settled(until=lambda s, _i: s.uniqueid != before, what="the IKE SA rekeyed")
    seen_by_strongswan.add(f"ike:{ss.proposal}")
    ike_sas += 1
    assert seen_by_strongswan == {f"ike:{SUITE.ike_negotiated}", f"esp:{SUITE.esp_negotiated}",
                                  f"esp:{SUITE.esp_rekeyed}"}

    scan = pair.topo.left.namespace.run(sys.executable, "-m", "ikeguard", "scan", pair.ikg_addr, "--json",
                                        "--rate", "40/s", check=False, timeout=180)
    (tmp_path / "scan.json").write_text(scan.stdout)
    assert json.loads(scan.stdout)["schema"] == "ikeguard-scan/1", scan.stderr

    pack = tmp_path / "pack"
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    made = _ikeguard("evidence", "-c", str(pair.gw.config_path), "--from", rfc3339(began), "--to",
                     rfc3339(until), "-o", str(pack), "--scan", str(tmp_path / "scan.json"))
    assert made.returncode == 0, made.stdout + made.stderr

    crypto = json.loads((pack / "inventory" / "crypto.json").read_text())
    assert set(crypto["negotiated_suites"]) == seen_by_strongswan  # exactly what strongSwan negotiated
    counts = {(u["protocol"], u["proposal"]): u["count"] for u in crypto["negotiated"]}
    assert counts == {("ike", SUITE.ike_negotiated): 2, ("esp", SUITE.esp_negotiated): 1,
                      ("esp", SUITE.esp_rekeyed): 2}
    summary = json.loads((pack / "connections" / "summary.json").read_text())
    assert (summary["ike_sas"], summary["child_sas"]) == (ike_sas, child_sas)
    assert summary["auth_failures"] == 0

    client = pair.peer.certs["client"].cert  # made by strongSwan's `pki` (tests/harness/pki_tool.py)
    certs = json.loads((pack / "inventory" / "certificates.json").read_text())["seen"]
    assert [c["peers"] for c in certs] == [[CLIENT_FQDN]]
    assert (certs[0]["subject"], certs[0]["serial"]) == (client.subject.rfc4514_string(),
                                                         format(client.serial_number, "x"))
    assert certs[0]["key_type"] == describe_key(client) == "ECDSA secp384r1"
    assert certs[0]["not_after"] == client.not_valid_after_utc.isoformat()
    assert certs[0]["revocation"].startswith("valid")
    assert json.loads((pack / "scan" / "scan-1.json").read_text())["target"]["host"] == pair.ikg_addr

    # the snapshot is the configuration `ikeguard run` loaded: config.loaded names the same digest
    snapshot = json.loads((pack / "config" / "snapshot.json").read_text())
    last_loaded = snapshot["last_loaded_in_period"]
    assert last_loaded["same_as_this_snapshot"] is True, last_loaded
    assert snapshot["last_loaded_in_period"]["config_sha256"] == snapshot["digest"]["sha256"]

    key = pair.gw.state_dir / "audit-verification.key"
    verified = _ikeguard("evidence", "verify", str(pack), "--key", str(key))
    assert verified.returncode == 0, verified.stdout
