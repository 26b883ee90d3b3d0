"""An ikeguard HA pair in network namespaces for the issue 20 interop tests (docs/ha.md): a LAN namespace
with a bridge (and etcd on 192.0.2.200) joins the strongSwan peer (192.0.2.100) and the gateway nodes gw1
(192.0.2.1) and gw2 (192.0.2.2); keepalived moves the virtual address 192.0.2.10 between them. Protected
subnets: the gateways' 198.51.100.0/25 (198.51.100.1 on lo of both), the peer's 198.51.100.128/25. Also the
capture parser the tests judge the wire with."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, NetnsLab, wait_until
from tests.harness.etcd import Etcd, etcd
from tests.harness.keepalived import keepalived
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

PSK = "ha-pair-psk-5d0c3b9e21f7a846"
VIP = "192.0.2.10"
ETCD_HOST = "192.0.2.200"
HA_KEY = "42" * 32
LEASE_TTL = 2  # etcd's minimum with its default timing; a new active waits for a killed one's lease


def node_ns(lab: NetnsLab, lan: Namespace, role: str, address: str, port: str) -> Namespace:
    """A namespace on the LAN bridge with ``address`` on its eth0."""
    ns = lab.namespace(role)
    lab.veth(lan, ns, port, "eth0")
    lan.ip("link", "set", port, "master", "br0")
    ns.add_address("eth0", address)
    return ns


HEARTBEAT_PORT = 4501
NODE_ADDRS = {"gw1": "192.0.2.1", "gw2": "192.0.2.2"}


def ha_config(node: str, etcd_url: str, heartbeat: bool = False) -> str:
    """The ``[ha]`` section of one node; ``heartbeat``: the node-to-node heartbeat on the LAN (peer.py)."""
    other = "gw2" if node == "gw1" else "gw1"
    beat = (f'peer_heartbeat = "{NODE_ADDRS[other]}:{HEARTBEAT_PORT}"\n'
            f'heartbeat_listen = "{NODE_ADDRS[node]}:{HEARTBEAT_PORT}"\n') if heartbeat else ""
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
{beat}"""


@dataclass
class HaPair:
    """The lab: peer namespace, the two nodes (namespace, gateway process) and etcd."""

    peer_ns: Namespace
    lan: Namespace  # the bridge's namespace (etcd, an upstream router)
    nodes: list[tuple[Namespace, GatewayProcess]]
    server: Etcd
    workdir: Path
    ike_proposal: str = IKE_PROPOSAL

    def holds_vip(self, index: int) -> bool:
        return any(str(a) == VIP for a in self.nodes[index][0].addresses("eth0"))

    def connect(self, strongswan_peer: Callable[..., StrongSwanPeer]) -> StrongSwanPeer:
        """The strongSwan peer with connection ikg (Child SA net) to the virtual address, initiated."""
        conn = ConnectionConfig(
            name="ikg", local_addrs=["192.0.2.100"], remote_addrs=[VIP],
            local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN),
            proposals=[self.ike_proposal],
            children=[ChildConfig(name="net", local_ts=["198.51.100.128/25"], remote_ts=["198.51.100.0/25"],
                                  esp_proposals=[ESP_PROPOSAL])],
        )
        peer = strongswan_peer(self.peer_ns, "client", connections=[conn],
                               psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
        peer.initiate(child="net", ike="ikg")
        return peer


@contextmanager
def ha_pair(lab: NetnsLab, ikeguard_gateway: Callable[..., GatewayProcess], workdir: Path, *,
            ike_proposal: str = IKE_PROPOSAL, config: GwConfig | None = None,
            adjust: Callable[[str], str] = lambda text: text, heartbeat: bool = False) -> Iterator[HaPair]:
    """Both nodes up, gw1 (priority 150) active and holding the address, gw2 standby. ``config`` replaces
    the one-peer configuration, ``adjust`` edits its text."""
    lan = lab.namespace("lan")
    lan.ip("link", "add", "br0", "type", "bridge")
    lan.set_up("br0")
    lan.add_address("br0", f"{ETCD_HOST}/24")
    peer_ns = node_ns(lab, lan, "peer", "192.0.2.100/24", "p-peer")
    peer_ns.add_subnet_address("198.51.100.129")
    nodes = []
    with etcd(workdir, lan, ETCD_HOST) as server:
        for name, addr in (("gw1", "192.0.2.1/24"), ("gw2", "192.0.2.2/24")):
            ns = node_ns(lab, lan, name, addr, f"p-{name}")
            ns.add_subnet_address("198.51.100.1")
            ns.sysctl("net.ipv4.ip_nonlocal_bind", 1)  # both listen on the virtual address
            gw_config = config or GwConfig(VIP, "%any", GW_FQDN, CLIENT_FQDN, "198.51.100.0/25",
                                           "198.51.100.128/25", psk=PSK, dataplane="userspace",
                                           dpd_delay="2s", ike_proposal=ike_proposal)
            files = {**gw_config.files(), "ha.key": HA_KEY}
            text = adjust(gw_config.text()) + ha_config(name, server.url, heartbeat)
            gw = ikeguard_gateway(ns, name, text, files)
            assert gw.pid is not None
            nodes.append((ns, gw))
        pair = HaPair(peer_ns, lan, nodes, server, workdir, ike_proposal)
        gw1, gw2 = nodes[0][1], nodes[1][1]
        notify_log = workdir / "ka-gw1" / "notify.log"
        # gw1's keepalived first, gw2's once gw1 is MASTER: with nopreempt the first to time out would win
        for index, ((ns, gw), priority) in enumerate(zip(nodes, (150, 100), strict=True)):
            keepalived(ns, workdir / f"ka-{gw.name}", name=gw.name, priority=priority, vip=f"{VIP}/24",
                       ifname="eth0", gateway_pid=gw.pid or 0, socket=gw.control_socket)
            if index == 0:
                assert wait_until(lambda: gw1.cli("ha", "status")["role"] == "active", 15, interval=0.2), \
                    notify_log.read_text() if notify_log.exists() else "no notify"
                assert wait_until(lambda: pair.holds_vip(0), 5, interval=0.1)
        time.sleep(1.0)  # gw2's keepalived hears gw1's adverts and settles as BACKUP
        assert gw2.cli("ha", "status")["role"] == "standby"
        yield pair


def audit_time(event: dict[str, Any]) -> float:
    """An audit record's time (epoch seconds)."""
    import datetime as dt

    return dt.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Frame:
    """One captured IPv4 packet: time, source MAC, and what the tests look at."""

    time: float
    src_mac: bytes
    src_ip: str
    esp: tuple[int, int] | None  # (SPI, sequence number), RFC 4303 §2 (also in UDP 4500, RFC 3948)
    ike_exchange: int | None  # RFC 7296 §3.1 exchange type


def read_frames(path: Path) -> list[Frame]:
    """Ethernet frames of a classic pcap file with their capture times."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl = struct.unpack_from(endian + "III", data, off)
        frame = data[off + 16: off + 16 + incl]
        off += 16 + incl
        parsed = _parse(frame, sec + frac / (1e9 if nano else 1e6))
        if parsed is not None:
            out.append(parsed)
    return out


def _parse(frame: bytes, when: float) -> Frame | None:
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    body = ip[ihl:]
    src = ".".join(str(b) for b in ip[12:16])
    esp: Any = None
    exchange = None
    if ip[9] == 50 and len(body) >= 8:
        esp = struct.unpack_from("!II", body, 0)
    elif ip[9] == 17 and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body, 0)
        payload = body[8:]
        if 4500 in (sport, dport):
            if payload[:4] != bytes(4) and len(payload) >= 8:
                esp = struct.unpack_from("!II", payload, 0)
            payload = payload[4:]
        if esp is None and len(payload) >= 28:
            exchange = payload[18]
    return Frame(when, bytes(frame[6:12]), src, esp, exchange)
