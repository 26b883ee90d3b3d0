"""`ikeguard scan` against real responders in network namespaces (issue 21).

The scanner runs as the real command (``python -m ikeguard scan ... --json``) in the left namespace of a
two-host topology; the responder (strongSwan 5.9.8, an `ikeguard run` gateway, or a small UDP server of this
test) listens on 192.0.2.1. The expected accepted set is derived from strongSwan's own configured proposal
strings (parsed by the project's swanctl proposal parser, which mirrors strongSwan's keywords, e.g. ``sha1``
implying PRF_HMAC_SHA1) and compared exactly with the scan: every transform of the scanner's catalog is
either in the union of the configured proposals (must be "accepted") or not (must be "refused").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.scan.catalog import candidates
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, Topology
from ikeguard.wire import parse_proposal
from ikeguard.wire.iana import ProtocolId
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

WEAK_AND_STRONG = ("aes256gcm16-aes128gcm16-prfsha384-ecp384-x25519",
                   "aes256-3des-sha256-sha1-modp1024-modp2048")
STRONG_ONLY = ("aes256gcm16-prfsha384-ecp384", "aes256-sha384-ecp384")
FULL_SCAN_LIMIT_S = 60.0
GW_ID, CLIENT_ID = "gw.scan.example", "client.scan.example"
PSK = "scan-test-psk-8e1f0b7c2d4a6935"
CLASS_OF = {"ENCR": "encr", "PRF": "prf", "INTEG": "integ", "KE": "ke"}


def _run_scan(ns: Namespace, target: str, *args: str, timeout: float = 120.0) -> tuple[int, dict[str, Any],
                                                                                          float]:
    started = time.monotonic()
    proc = ns.run(sys.executable, "-m", "ikeguard", "scan", target, "--json", *args, check=False,
                  timeout=timeout)
    elapsed = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON (rc {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return proc.returncode, data, elapsed


def _expected(proposals: tuple[str, ...]) -> set[tuple[str, int, int | None]]:
    """Union over strongSwan's configured proposals: (class, id, key length)."""
    out: set[tuple[str, int, int | None]] = set()
    for text in proposals:
        spec = parse_proposal(text, ProtocolId.IKE)
        for cls, items in (("ENCR", spec.encr), ("PRF", spec.prf), ("INTEG", spec.integ), ("KE", spec.ke)):
            out.update((cls, t.id, t.key_length) for t in items)
    return out


def _accepted(data: dict[str, Any]) -> set[tuple[str, int, int | None]]:
    return {(t["class"], t["id"], t["key_length"]) for t in data["transforms"] if t["status"] == "accepted"}


def _strongswan_responder(strongswan_peer: PeerFactory, topo: Topology, proposals: tuple[str, ...],
                          **kwargs: Any) -> StrongSwanPeer:
    right = topo.right
    conn = ConnectionConfig(
        name="scan", local_addrs=[str(right.address)], remote_addrs=["%any"],
        local=AuthConfig("psk", GW_ID), remote=AuthConfig("psk", CLIENT_ID), proposals=list(proposals),
        children=[ChildConfig("net", local_ts=[str(right.subnet)], remote_ts=["0.0.0.0/0"],
                              esp_proposals=["aes256gcm16"])],
    )
    return strongswan_peer(right.namespace, "responder", connections=[conn],
                           psks=[PskSecret(ids=[GW_ID, CLIENT_ID], secret=PSK)], **kwargs)


def test_weak_and_strong_strongswan_exact_set_and_pci_findings(
        netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory) -> None:
    """Every transform strongSwan's proposals contain is accepted, every other catalog transform refused;
    pci-dss-4 exits 1 naming 3DES, SHA-1 and MODP-1024 with their sources; the scan stays fast and polite."""
    topo = netns_topology()
    peer = _strongswan_responder(strongswan_peer, topo, WEAK_AND_STRONG,
                                 charon_options={"send_vendor_id": True})
    rc, data, elapsed = _run_scan(topo.left.namespace, str(topo.right.address), "--profile", "pci-dss-4")

    expected = _expected(WEAK_AND_STRONG)
    catalog = {(c.cls, c.transform.id, c.transform.key_length) for cs in candidates().values() for c in cs}
    assert expected <= catalog  # the test's configuration only names transforms the scanner asks about
    statuses = {(t["class"], t["id"], t["key_length"]): t["status"] for t in data["transforms"]}
    assert set(statuses) == catalog
    wrong = {k: v for k, v in statuses.items() if (v == "accepted") != (k in expected)}
    assert not wrong, f"scan disagrees with strongSwan's configuration: {wrong}"
    assert all(v in ("accepted", "refused") for v in statuses.values())
    assert data["status"] == "complete" and data["stop_reason"] is None

    assert rc == 1 and data["exit_code"] == 1
    failing = {(f["rule"], f["transform"]) for f in data["findings"] if f["severity"] == "error"}
    assert ("crypto.ike.encr", "3DES_CBC") in failing
    assert ("crypto.ike.prf", "PRF_HMAC_SHA1") in failing
    assert ("crypto.ike.integ", "HMAC_SHA1_96") in failing
    assert ("crypto.ike.ke", "MODP_1024") in failing
    assert all("PCI DSS 4.0.1 4.2.1" in f["sources"] for f in data["findings"])
    strong = {"AES_GCM_16-256", "AES_GCM_16-128", "ECP_384", "CURVE_25519", "PRF_HMAC_SHA2_384"}
    assert not {f["transform"] for f in data["findings"] if f["severity"] == "error"} & strong
    warned = {f["transform"] for f in data["findings"] if f["severity"] == "warning"}
    assert "MODP_2048" in warned  # sunset warning, not a failure

    b = data["behaviours"]
    assert b["fragmentation"] is True  # swanctl.conf fragmentation defaults to yes (announced)
    assert b["nat_t"]["supported"] is True and b["nat_t"]["nat_in_front_of_us"] is False
    assert "SHA2_384" in b["signature_hash_algorithms"]
    assert any(v["name"] == "strongSwan" for v in b["vendor_ids"])
    assert b["udp_4500"] == "answers"
    assert b["cookie_requested"] is False

    assert elapsed < FULL_SCAN_LIMIT_S
    assert data["half_open_sas_left"] <= 2
    half_open = [sa for sa in peer.list_sas() if sa.state == "CONNECTING"]
    assert len(half_open) == data["half_open_sas_left"]
