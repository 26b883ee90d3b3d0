"""`ikeguard scan` with credentials against strongSwan 5.9.8 (issue 21, Done-when item 4).

The scanner authenticates (PSK from a file, or a certificate + key made with strongSwan's `pki` tool), then
probes the Child SA configuration with CREATE_CHILD_SA exchanges. The expected ESP set and the PFS
requirement are derived from strongSwan's configured ``esp_proposals`` strings (the project's swanctl parser):
every ESP transform the scanner probes is accepted exactly when some configured proposal contains it; PFS is
required exactly when every configured proposal carries a key exchange group.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.netns import Namespace, Topology
from ikeguard.wire import parse_proposal
from ikeguard.wire.iana import ProtocolId
from tests.harness.pki_tool import PkiTool
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]

IKE = ("aes256gcm16-prfsha384-ecp384",)
GW_ID, CLIENT_ID = "gw.scan.example", "client.scan.example"
PSK_HEX = "0x5c3a9e01f27b48d6a1c0e93f7d2b6a8145e0c7d9b3f1a2e4"
ESP_CLASSES = ("ESP_ENCR", "ESP_INTEG", "ESP_KE")


def _scan(ns: Namespace, target: str, *args: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    proc = ns.run(sys.executable, "-m", "ikeguard", "scan", target, "--json", "--rate", "40/s", "--no-ikev1",
                  *args, check=False, timeout=180)
    elapsed = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        return proc.returncode, json.loads(proc.stdout), elapsed
    except json.JSONDecodeError:
        pytest.fail(f"no JSON (rc {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")


def _expected_esp(proposals: tuple[str, ...]) -> set[tuple[str, int, int | None]]:
    out: set[tuple[str, int, int | None]] = set()
    for text in proposals:
        spec = parse_proposal(text, ProtocolId.ESP)
        for cls, items in (("ESP_ENCR", spec.encr), ("ESP_INTEG", spec.integ), ("ESP_KE", spec.ke)):
            out.update((cls, t.id, t.key_length) for t in items if t.id != 0)
    return out


def _esp_rows(data: dict[str, Any]) -> dict[tuple[str, int, int | None], str]:
    return {(t["class"], t["id"], t["key_length"]): t["status"] for t in data["transforms"]
            if t["class"] in ESP_CLASSES}


def _assert_exact(data: dict[str, Any], esp: tuple[str, ...]) -> None:
    expected = _expected_esp(esp)
    rows = _esp_rows(data)
    assert expected <= set(rows), f"not every configured ESP transform was probed: {rows}"
    evidence = {(t["class"], t["id"], t["key_length"]): t["evidence"] for t in data["transforms"]}
    wrong = {k: (v, evidence[k]) for k, v in rows.items()
             if v != ("accepted" if k in expected else "refused")}
    assert not wrong, f"scan disagrees with strongSwan's esp_proposals {esp}: {wrong}"
    pfs_required = all(parse_proposal(p, ProtocolId.ESP).ke for p in esp)
    assert data["authenticated"]["pfs"] == ("required" if pfs_required else "not_required")


def _responder(strongswan_peer: PeerFactory, topo: Topology, esp: tuple[str, ...],
               **auth: Any) -> StrongSwanPeer:
    right = topo.right
    conn = ConnectionConfig(
        name="scan", local_addrs=[str(right.address)], remote_addrs=["%any"],
        local=auth.get("local", AuthConfig("psk", GW_ID)),
        remote=auth.get("remote", AuthConfig("psk", CLIENT_ID)),
        proposals=list(IKE),
        children=[ChildConfig("net", local_ts=[str(right.subnet)], remote_ts=[str(topo.left.subnet)],
                              esp_proposals=list(esp))],
    )
    return strongswan_peer(right.namespace, "responder", connections=[conn],
                    psks=[PskSecret(ids=[GW_ID, CLIENT_ID], secret=PSK_HEX)], certs=auth.get("certs"),
                    cacerts=auth.get("cacerts"))


def test_psk_esp_suites_and_pfs_required_match_strongswan(
        netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, tmp_path: Path) -> None:
    """A weak and a strong ESP proposal, both with a group: the ESP set is exact, PFS required, and
    pci-dss-4 names HMAC-SHA1-96 in CREATE_CHILD_SA; the strongSwan side keeps no Child SA afterwards."""
    esp = ("aes128-sha1-modp2048", "aes256gcm16-ecp384")
    topo = netns_topology()
    _responder(strongswan_peer, topo, esp)
    psk = tmp_path / "scan.psk"
    psk.write_text(PSK_HEX + "\n")
    rc, data, elapsed = _scan(topo.left.namespace, str(topo.right.address), "--profile", "pci-dss-4",
                              "--id", CLIENT_ID, "--remote-id", GW_ID, "--psk-file", str(psk),
                              "--local-ts", str(topo.left.subnet))
    auth = data["authenticated"]
    assert auth["established"] is True and auth["error"] is None, auth
    assert auth["remote_id"] == GW_ID and auth["certificate_chain"] == []
    assert auth["ike_proposal"] == "aes256gcm16-prfsha384-ecp384"
    _assert_exact(data, esp)
    errors = {(f["rule"], f["transform"]) for f in data["findings"] if f["severity"] == "error"}
    assert ("crypto.esp.integ", "HMAC_SHA1_96") in errors
    assert not {t for _, t in errors} & {"AES_GCM_16-256", "ECP_384", "AES_CBC-128"}
    assert rc == 1
    assert "3DES_CBC" in auth["not_probed"]  # ikeguard cannot negotiate it: said, not reported refused
    assert elapsed < 60


def test_certificate_chain_and_pfs_not_required(
        netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, tmp_path: Path) -> None:
    """Certificates from strongSwan's `pki`: the chain strongSwan presents is reported (ECDSA P-384, its
    not-after) and validated against --cacert; an ESP proposal without a group = PFS not required, which
    pci-dss-4's pfs.required rule reports; a strong-only set otherwise."""
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=scan-lab, CN=Scan Lab CA")
    gw = tool.issue("gw", ca, f"C=US, O=scan-lab, CN={GW_ID}", sans=[GW_ID], flags=["serverAuth"])
    client = tool.issue("client", ca, f"C=US, O=scan-lab, CN={CLIENT_ID}", sans=[CLIENT_ID],
                        flags=["clientAuth"])
    esp = ("aes256gcm16",)
    topo = netns_topology()
    _responder(strongswan_peer, topo, esp, local=AuthConfig("pubkey", GW_ID, certs=["gw.pem"]),
               remote=AuthConfig("pubkey", CLIENT_ID, cacerts=["ca.pem"]), certs={"gw": gw.issued(ca)},
               cacerts={"ca": ca.cert})
    rc, data, _ = _scan(topo.left.namespace, str(topo.right.address), "--profile", "pci-dss-4",
                        "--id", CLIENT_ID, "--cert", str(client.cert_path), "--key", str(client.key_path),
                        "--cacert", str(ca.cert_path), "--local-ts", str(topo.left.subnet))
    auth = data["authenticated"]
    assert auth["established"] is True, auth
    assert auth["chain_status"].startswith("valid"), auth["chain_status"]
    leaf = auth["certificate_chain"][0]
    assert leaf["subject"] == gw.cert.subject.rfc4514_string()
    assert leaf["key"] == "ECDSA secp384r1" and leaf["signature_algorithm"] == "ecdsa-with-SHA384"
    assert leaf["not_after"] == gw.cert.not_valid_after_utc.isoformat()
    assert leaf["days_left"] == (gw.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    _assert_exact(data, esp)
    assert ("pfs.required", "PFS") in {(f["rule"], f["transform"]) for f in data["findings"]}
    assert rc == 1

    # the wrong anchor: the chain is refused and nothing is probed, said plainly
    other = tool.self_signed_ca("other", "C=US, O=elsewhere, CN=Other CA")
    rc, data, _ = _scan(topo.left.namespace, str(topo.right.address), "--id", CLIENT_ID,
                        "--cert", str(client.cert_path), "--key", str(client.key_path),
                        "--cacert", str(other.cert_path))
    auth = data["authenticated"]
    assert auth["established"] is False and auth["chain_status"].startswith("refused")
    assert not _esp_rows(data)
