"""A CRL server that never answers stalls only the IKE SA whose certificate needs it (issue 15 item 1).

The gateway (192.0.2.1) has two connections: ``slow`` for peer 1, whose authority lists three CRL URIs served
by a TCP listener in the gateway's namespace that accepts and never answers (revocation strict), and ``fast``
for peer 2 (same CA, no CRL URIs). Both peers are strongSwan 5.9 charons with certificates, each in its own
namespace (tests/harness/multi_site.py).

Peer 1 starts IKE_AUTH; its validation waits for the fetches (3 URIs x the 3 s fetch timeout, done in the
gateway's worker threads). Meanwhile peer 2 sets up IKE_SA_INIT + IKE_AUTH + its Child SA and gets its DPD
answered in normal time, and the control socket answers ``sas``. When the fetches have failed, strict
revocation refuses peer 1 (AUTHENTICATION_FAILED to strongSwan, ``revocation.failed`` in the audit trail).
Before, validation fetched with urllib on the event loop and the whole gateway stood still for 9 s.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, stop_process
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    gateway_toml,
)
from tests.harness.multi_site import GATEWAY_ADDRESS, GATEWAY_SUBNET, SiteHost, SiteSpec, build_multi_site
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
GW_ID = "gw.revocation.example"
HANG_PORTS = (8081, 8082, 8083)
HANG_URIS = [f"http://{GATEWAY_ADDRESS}:{port}/lab.crl" for port in HANG_PORTS]
SITES = (
    SiteSpec("slow", "slow.revocation.example", "192.0.2.11", "198.51.100.128/27"),
    SiteSpec("fast", "fast.revocation.example", "192.0.2.12", "198.51.100.160/27"),
)
NORMAL_S = 2.0  # a local IKE_SA_INIT + IKE_AUTH, or a control request, takes well under this

HANG_SERVER = textwrap.dedent(
    """
    import select, socket, sys
    listeners = []
    for port in sys.argv[2:]:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], int(port)))
        s.listen(64)
        listeners.append(s)
    print("ready", flush=True)
    held = []
    while True:  # accept every connection and never send a byte
        ready, _, _ = select.select(listeners, [], [])
        held += [s.accept()[0] for s in ready]
    """
)


def _gateway_config(slow: SiteHost, fast: SiteHost) -> str:
    def conn(name: str, peer: SiteHost, authority: str) -> IkgConnection:
        return IkgConnection(
            name=name,
            local_addrs=[GATEWAY_ADDRESS],
            remote_addrs=[peer.address],
            local=IkgLocal("pubkey", GW_ID, certs=["pki/gw.pem"], key="pki/gw.key"),
            remote=IkgRemote("pubkey", peer.identity, cacerts=[authority], revocation="strict"),
            children=[IkgChild("net", local_ts=[GATEWAY_SUBNET], remote_ts=[peer.subnet],
                               esp_proposals=[ESP_PROPOSAL])],
            proposals=[IKE_PROPOSAL],
        )

    return gateway_toml(
        [conn("slow", slow, "hanging"), conn("fast", fast, "lab")],
        listen=[GATEWAY_ADDRESS],
        authorities=[IkgAuthority("hanging", "pki/ca.pem", crl_uris=HANG_URIS),
                     IkgAuthority("lab", "pki/ca.pem", crls=["pki/lab.crl"])],
    )


def _peer_conn(site: SiteHost, **extra: str) -> ConnectionConfig:
    return ConnectionConfig(
        name="m",
        local_addrs=[site.address],
        remote_addrs=[GATEWAY_ADDRESS],
        local=AuthConfig("pubkey", site.identity, certs=["m.pem"]),
        remote=AuthConfig("pubkey", GW_ID, cacerts=["ca.pem"]),
        proposals=[IKE_PROPOSAL],
        children=[ChildConfig("net", local_ts=[site.subnet], remote_ts=[GATEWAY_SUBNET],
                              esp_proposals=[ESP_PROPOSAL])],
        **extra,  # type: ignore[arg-type]
    )


def test_hanging_crl_server_does_not_stall_another_peer(
    netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    cert_factory: CertificateAuthority,
) -> None:
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    slow, fast = net["slow"], net["fast"]
    ca = cert_factory
    gw_cert = ca.issue_leaf(f"CN={GW_ID},O=gateway", sans=[GW_ID])
    leaves = {s.identity: ca.issue_leaf(f"CN={s.identity},O=peer", sans=[s.identity]) for s in (slow, fast)}

    hang = net.gateway.namespace.popen(
        [sys.executable, "-c", HANG_SERVER, GATEWAY_ADDRESS, *map(str, HANG_PORTS)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hang.stdout is not None and hang.stdout.readline().strip() == "ready"
        gw = ikeguard_gateway(net.gateway.namespace, "gw", _gateway_config(slow, fast), {
            "pki/ca.pem": ca.issued.cert_pem(), "pki/gw.pem": gw_cert.cert_pem(),
            "pki/gw.key": gw_cert.key_pem(),
            "pki/lab.crl": ca.crl([]).public_bytes(serialization.Encoding.PEM),
        })
        common = {"cacerts": {"ca": ca.cert}}
        peer1 = strongswan_peer(slow.namespace, "slow", connections=[_peer_conn(slow)],
                                certs={"m": leaves[slow.identity]}, **common)
        peer2 = strongswan_peer(fast.namespace, "fast", connections=[_peer_conn(fast, dpd_delay="1s")],
                                certs={"m": leaves[fast.identity]}, **common)

        # Peer 1 starts; the gateway's validation of its certificate waits for the hanging CRL server.
        def initiate_slow() -> None:
            with contextlib.suppress(StrongSwanError):
                peer1.initiate(child="net", ike="m", timeout=30)

        slow_thread = threading.Thread(target=initiate_slow, name="peer1-initiate", daemon=True)
        slow_thread.start()
        peer1.wait_for_log("generating IKE_AUTH request 1")
        time.sleep(0.5)  # the request reached the gateway; its first fetch (3 s timeout) is running
        hang_started = time.monotonic()

        # Meanwhile: the control socket answers, peer 2 comes up and its DPD is answered, in normal time.
        started = time.monotonic()
        sas = gw.sas()
        assert time.monotonic() - started < NORMAL_S, f"control socket took {time.monotonic() - started:.1f}s"
        slow_sa = [s for s in sas if s["remote_addr"] == slow.address]
        assert slow_sa and slow_sa[0]["state"] != "established", sas

        started = time.monotonic()
        peer2.initiate(child="net", ike="m", timeout=10)
        setup_s = time.monotonic() - started
        assert setup_s < NORMAL_S, f"peer 2 IKE_SA_INIT/IKE_AUTH took {setup_s:.1f}s while peer 1 waits"
        up = peer2.wait_established("m", "net", timeout=1)
        assert up.remote_id == GW_ID

        started = time.monotonic()
        peer2.wait_for_log("parsed INFORMATIONAL response 2 [ ]", timeout=1.0 + NORMAL_S)  # DPD (1 s)
        dpd_s = time.monotonic() - started
        started = time.monotonic()
        fast_sa = gw.wait_sas(lambda s: any(x["name"] == "fast" and x["state"] == "established" for x in s),
                              timeout=NORMAL_S, what="peer 2 established")
        assert time.monotonic() - started < NORMAL_S
        assert [x["name"] for x in fast_sa if x["state"] == "established"] == ["fast"]
        # all of that happened while peer 1's validation was still waiting (3 URIs x 3 s)
        assert time.monotonic() - hang_started < 6.0, "the hang ended before the checks: test proves nothing"
        assert [x["state"] for x in fast_sa if x["remote_addr"] == slow.address] == ["half-open"]
        assert dpd_s < 1.0 + NORMAL_S

        # Then the fetches fail and strict revocation refuses peer 1; peer 2 stays up.
        failed = gw.wait_audit(lambda e: e["event"] == "revocation.failed", timeout=20,
                               what="revocation.failed for peer 1")
        assert failed["remote_id"] == slow.identity and failed["outcome"] == "failure"
        assert all(uri in failed["reason"] for uri in HANG_URIS), failed["reason"]
        peer1.wait_for_log("received AUTHENTICATION_FAILED notify error", timeout=10)
        slow_thread.join(timeout=35)
        assert peer2.wait_established("m", "net", timeout=1)
        assert [s["name"] for s in gw.sas()] == ["fast"]
        assert "revocation fetch" in gw.log()
    finally:
        stop_process(hang)
