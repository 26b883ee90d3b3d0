"""Issue 20 "Done when" 1-2: a strongSwan peer has a tunnel to the virtual address of an ikeguard pair
(keepalived VRRP, SA state replicated through etcd); the active ikeguard is killed with SIGKILL; the standby
holds the address and traffic flows again through the same IKE SA and Child SA (strongSwan's list-sas shows
the same SPIs and no new IKE SA; a capture shows no IKE_SA_INIT and no ESP sequence number sent twice), lost
pings counted; then a Child SA rekey, an IKE SA rekey and DPD work; then etcd stops and the active node
records ha.sync_failed once and, unable to renew its lease, steps down (fencing) within 0.8 x lease_ttl of its
last renewal (item 4; the split-brain test is test_ha_fencing.py).

Layout: a LAN namespace with a bridge (and etcd on 192.0.2.200) joins the peer (192.0.2.100) and the gateway
nodes gw1 (192.0.2.1) and gw2 (192.0.2.2); the virtual address is 192.0.2.10. Protected subnets: the
gateways' 198.51.100.0/25 (198.51.100.1 on lo of both), the peer's 198.51.100.128/25."""

from __future__ import annotations

import re
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, wait_until
from tests.harness.etcd import etcd
from tests.harness.keepalived import keepalived
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.harness.traffic import Capture
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.slow]

PSK = "ha-pair-psk-5d0c3b9e21f7a846"
VIP = "192.0.2.10"
ETCD_HOST = "192.0.2.200"
HA_KEY = "42" * 32
PING_INTERVAL = 0.05
LEASE_TTL = 2  # etcd's minimum with its default timing; the new active waits for the killed one's lease


def _node(lab: NetnsLab, lan: Any, role: str, address: str, port: str) -> Any:
    ns = lab.namespace(role)
    lab.veth(lan, ns, port, "eth0")
    lan.ip("link", "set", port, "master", "br0")
    ns.add_address("eth0", address)
    return ns


def _parse(frames: list[bytes]) -> tuple[list[int], list[tuple[int, int]]]:
    """IKE exchange types and (SPI, sequence number) of ESP sent from the virtual address, from Ethernet
    frames (RFC 7296 §3.1 header; RFC 4303 §2; RFC 3948 non-ESP marker on 4500)."""
    exchanges: list[int] = []
    esp: list[tuple[int, int]] = []
    vip = bytes(int(x) for x in VIP.split("."))
    for frame in frames:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        body = ip[ihl:]
        if ip[9] == 50 and ip[12:16] == vip:
            esp.append(struct.unpack_from("!II", body, 0))
        elif ip[9] == 17 and len(body) >= 8:
            dport = struct.unpack_from("!H", body, 2)[0]
            sport = struct.unpack_from("!H", body, 0)[0]
            payload = body[8:]
            if 4500 in (sport, dport):
                if payload[:4] != bytes(4):
                    if ip[12:16] == vip:
                        esp.append(struct.unpack_from("!II", payload, 0))
                    continue
                payload = payload[4:]
            if len(payload) >= 28:
                exchanges.append(payload[18])
    return exchanges, esp


def _child_spi(peer: StrongSwanPeer) -> int | None:
    """The installed Child SA's inbound SPI at strongSwan (None while a rekey is between states)."""
    sas = peer.list_sas("ikg")
    try:
        return sas[0].child("net").spi_in if len(sas) == 1 else None
    except KeyError:
        return None


def _ha_config(node: str, etcd_url: str) -> str:
    return f"""
[ha]
enabled = true
node = "{node}"
etcd_endpoints = ["{etcd_url}"]
prefix = "/test/ha/"
key_file = "ha.key"
sync_interval = 0.2
max_state_age = 10.0
lease_ttl = {LEASE_TTL}
"""


def test_sigkill_of_the_active_node_keeps_the_same_sas(
    netns_lab: NetnsLab, strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    lab = netns_lab
    lan = lab.namespace("lan")
    lan.ip("link", "add", "br0", "type", "bridge")
    lan.set_up("br0")
    lan.add_address("br0", f"{ETCD_HOST}/24")
    peer_ns = _node(lab, lan, "peer", "192.0.2.100/24", "p-peer")
    peer_ns.add_subnet_address("198.51.100.129")
    nodes = []
    with etcd(tmp_path, lan, ETCD_HOST) as server:
        for name, addr in (("gw1", "192.0.2.1/24"), ("gw2", "192.0.2.2/24")):
            ns = _node(lab, lan, name, addr, f"p-{name}")
            ns.add_subnet_address("198.51.100.1")
            ns.sysctl("net.ipv4.ip_nonlocal_bind", 1)  # both listen on the virtual address
            config = GwConfig(VIP, "%any", GW_FQDN, CLIENT_FQDN, "198.51.100.0/25", "198.51.100.128/25",
                              psk=PSK, dataplane="userspace", dpd_delay="2s")
            files = {**config.files(), "ha.key": HA_KEY}
            gw = ikeguard_gateway(ns, name, config.text() + _ha_config(name, server.url), files)
            assert gw.pid is not None
            nodes.append((ns, gw))
        for (ns, gw), priority in zip(nodes, (150, 100), strict=True):
            keepalived(ns, tmp_path / f"ka-{gw.name}", name=gw.name, priority=priority, vip=f"{VIP}/24",
                       ifname="eth0", gateway_pid=gw.pid or 0, socket=gw.control_socket)
        (ns1, gw1), (ns2, gw2) = nodes
        notify_log = tmp_path / "ka-gw1" / "notify.log"
        assert wait_until(lambda: gw1.cli("ha", "status")["role"] == "active", 15, interval=0.2), \
            notify_log.read_text() if notify_log.exists() else "no notify"
        assert wait_until(lambda: any(str(a) == VIP for a in ns1.addresses("eth0")), 5, interval=0.1)
        assert gw2.cli("ha", "status")["role"] == "standby"

        conn = ConnectionConfig(
            name="ikg", local_addrs=["192.0.2.100"], remote_addrs=[VIP],
            local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
            children=[ChildConfig(name="net", local_ts=["198.51.100.128/25"], remote_ts=["198.51.100.0/25"],
                                  esp_proposals=[ESP_PROPOSAL])],
        )
        peer = strongswan_peer(peer_ns, "client", connections=[conn],
                               psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
        peer.initiate(child="net", ike="ikg")
        before = peer.wait_established("ikg", "net", timeout=15)
        child_before = before.child("net")
        ping = peer_ns.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", "198.51.100.129",
                           "198.51.100.1", check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout
        assert wait_until(lambda: gw1.cli("ha", "status")["synced_sas"] == 1, 5, interval=0.1)
        time.sleep(0.5)  # a replication with the ping's sequence numbers

        capture = Capture(peer_ns, "eth0", "esp or udp port 500 or udp port 4500", tmp_path / "peer.pcap")
        stream = peer_ns.popen(["ping", "-n", "-i", str(PING_INTERVAL), "-W", "1", "-w", "12", "-I",
                                "198.51.100.129", "198.51.100.1"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        killed = time.monotonic()
        gw1.kill()  # SIGKILL by its PID: no DELETE, no goodbye
        took_address = wait_until(lambda: any(str(a) == VIP for a in ns2.addresses("eth0")), 3, interval=0.05)
        address_after = time.monotonic() - killed
        active = wait_until(lambda: gw2.cli("ha", "status")["role"] == "active", 5, interval=0.05)
        out, _ = stream.communicate(timeout=30)
        sent = int(re.search(r"(\d+) packets transmitted", out).group(1))  # type: ignore[union-attr]
        received = int(re.search(r"(\d+) received", out).group(1))  # type: ignore[union-attr]
        lost = sent - received
        status = gw2.cli("ha", "status")
        print(f"HA failover: address moved {address_after:.2f} s after SIGKILL; pings sent {sent}, "
              f"lost {lost} ({lost * PING_INTERVAL:.2f} s of traffic); takeover {status['last_takeover']}")
        assert took_address, "the standby did not take the address within 3 s"
        assert active, status
        assert status["last_takeover"]["restored"] == 1, status
        assert lost * PING_INTERVAL <= 3.0, (sent, received)
        assert received > 0

        after = peer.wait_established("ikg", "net", timeout=5)
        assert (after.initiator_spi, after.responder_spi) == (before.initiator_spi, before.responder_spi)
        child_after = after.child("net")
        assert (child_after.spi_in, child_after.spi_out) == (child_before.spi_in, child_before.spi_out)
        assert len(peer.list_sas("ikg")) == 1  # no second IKE SA
        ping = peer_ns.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", "198.51.100.129",
                           "198.51.100.1", check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout
        exchanges, esp = _parse(capture.stop())
        assert 34 not in exchanges, exchanges  # no IKE_SA_INIT on the wire across the failover
        spi_out = child_before.spi_in  # strongSwan's inbound SPI: what the gateways send to
        seqs = [seq for spi, seq in esp if spi == spi_out]
        assert len(seqs) > 20 and len(seqs) == len(set(seqs)), "an ESP sequence number was sent twice"
        print(f"capture: {len(seqs)} ESP packets from the virtual address, none reusing a sequence number; "
              f"exchanges seen {sorted(set(exchanges))}")

        # Child SA rekey and IKE SA rekey started by the peer, then DPD (ikeguard's dpd_delay 2 s) keeps it
        peer.rekey(child="net")
        assert wait_until(lambda: _child_spi(peer) not in (None, child_before.spi_in), 10, interval=0.2)
        peer.rekey(ike="ikg")
        assert wait_until(lambda: (lambda s: len(s) == 1 and s[0].initiator_spi != before.initiator_spi
                                   and s[0].state == "ESTABLISHED")(peer.list_sas("ikg")), 10, interval=0.2)
        time.sleep(5.0)
        assert len(gw2.sas()) == 1 and "dpd.timeout" not in {e["event"] for e in gw2.audit_events()}
        ping = peer_ns.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", "198.51.100.129",
                           "198.51.100.1", check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout

        # etcd unreachable: the active reports ha.sync_failed (once) and, unable to renew its lease, stops
        # sending (fencing: it cannot know the other node is not active) within 0.8 x lease_ttl
        server.stop()
        stopped = time.time()
        gw2.wait_audit(lambda e: e["event"] == "ha.sync_failed", timeout=10)
        fenced = gw2.wait_audit(lambda e: e["event"] == "ha.role" and e["outcome"] == "failure", timeout=10)
        status = gw2.cli("ha", "status")
        assert status["role"] == "standby" and "fenced" in fenced["reason"] and status["fenced"], status
        assert gw2.sas() == [] and status["sync_error"], status
        assert [e["event"] for e in gw2.audit_events()].count("ha.sync_failed") == 1
        print(f"etcd stopped: the active stepped down {_audit_time(fenced) - stopped:.2f} s later "
              f"({fenced['reason']})")
        assert _audit_time(fenced) - stopped <= LEASE_TTL * 0.8 + 0.5


def _audit_time(event: dict[str, Any]) -> float:
    """An audit record's time (epoch seconds)."""
    import datetime as dt

    return dt.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
