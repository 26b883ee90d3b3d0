"""Issue 7 "Done when", userspace data plane against strongSwan 5.9 (kernel-libipsec): `ikeguard run` with
``dataplane = "userspace"`` in one namespace, charon in the other, both roles.

- ping and a TCP transfer of random bytes both ways, SHA-256 compared on arrival; ikeguard's ``sas --json``
  counters equal strongSwan's list-sas counters exactly (both count inner IP octets and packets);
- a Child SA rekey (``ikeguard rekey`` and ``swanctl --rekey``) during a TCP transfer and a numbered UDP
  stream: the transfer verifies and no datagram is missing;
- replayed ESP packets (captured on the wire and re-sent), a corrupted ICV and an inner source outside the
  selectors (ESP sealed with strongSwan's own outbound key, which charon logs at level 4 in this test lab
  only) are dropped and counted per SA (``drops`` in ``sas --json``);
- MSS clamping (SYN seen clamped on ikeguard's TUN) and ICMP "fragmentation needed" with the tunnel MTU for
  ``ping -M do -s 1472``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ikeguard.dataplane.sa import OutboundSa
from ikeguard.dataplane.sequence import SequenceCounter
from ikeguard.dataplane.userspace.config import sa_from_json
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, Topology, wait_until
from tests.dataplane.packets import udp4
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import IkeSaInfo, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.harness.traffic import Capture, result, start_tool, tcp_transfer, udp_payloads
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "dataplane-interop-psk-5e1f0a93c7d2"
PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
TUN = "ikg0"


@dataclass
class Tunnel:
    """ikeguard (right, 192.0.2.1, 198.51.100.0/25) <-> strongSwan (left, 192.0.2.2, 198.51.100.128/25)."""

    topo: Topology
    gw: GatewayProcess
    peer: StrongSwanPeer
    workdir: Path

    @property
    def gw_addr(self) -> str:  # inside ikeguard's protected subnet
        return str(self.topo.right.subnet_address)

    @property
    def peer_addr(self) -> str:  # inside strongSwan's protected subnet
        return str(self.topo.left.subnet_address)

    def child(self) -> dict[str, Any]:
        sas = self.gw.sas()
        assert len(sas) == 1 and len(sas[0]["children"]) == 1, sas
        child: dict[str, Any] = sas[0]["children"][0]
        return child

    def ss_sa(self) -> IkeSaInfo:
        sas = self.peer.list_sas()
        assert len(sas) == 1, sas
        return sas[0]

    def ping(self, count: int = 3, *extra: str) -> Any:
        return self.topo.left.namespace.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", *extra,
                                            "-I", self.peer_addr, self.gw_addr, check=False)


def _installed(sas: list[dict[str, Any]]) -> bool:
    return len(sas) == 1 and any(c["state"] == "installed" for c in sas[0]["children"])


def open_tunnel(topo: Topology, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
                workdir: Path, *, ikeguard_initiates: bool, log_keys: bool = False,
                rekey_time: str = "0", extra_gateway: str = "") -> Tunnel:
    """Start both sides and bring the Child SA up (ikeguard or strongSwan initiating)."""
    left, right = topo.left, topo.right
    conn = ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)],
        remote_addrs=["%any" if ikeguard_initiates else str(right.address)],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL], rekey_time=rekey_time)],
    )
    options = {"filelog.ikg.chd": 4} if log_keys else {}  # CHILD_SA keys in this lab's log only
    peer = strongswan_peer(left.namespace, "client", connections=[conn], charon_options=options,
                           psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
    config = GwConfig(str(right.address), str(left.address) if ikeguard_initiates else "%any", GW_FQDN,
                      CLIENT_FQDN, str(right.subnet), str(left.subnet), psk=PSK, dataplane="userspace",
                      start_action="start" if ikeguard_initiates else "none", extra_gateway=extra_gateway)
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), config.files())
    if not ikeguard_initiates:
        peer.initiate(child="net", ike="ikg")
    peer.wait_established("ikg", "net", timeout=15)
    gw.wait_sas(_installed, timeout=10)
    return Tunnel(topo, gw, peer, workdir)


def udp_rcvbuf_errors(ns: Namespace) -> int:
    """Datagrams the namespace's kernel dropped because a UDP socket's receive buffer was full."""
    lines = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def assert_counters_agree(t: Tunnel) -> tuple[dict[str, Any], Any]:
    """ikeguard's inbound counters equal strongSwan's outbound ones and vice versa (same SPIs, both count
    inner IP octets). The one explained difference: ESP datagrams the receiving kernel dropped at a full
    socket buffer (Udp RcvbufErrors of that namespace): exactly that many packets, each 40 (a bare TCP
    segment) to 1399 (the TUN MTU) inner octets."""
    time.sleep(0.3)  # nothing in flight
    child = t.child()
    ss_child = t.ss_sa().child("net")
    assert (child["spi_in"], child["spi_out"]) == (f"{ss_child.spi_out:08x}", f"{ss_child.spi_in:08x}")
    lost_at_peer = udp_rcvbuf_errors(t.topo.left.namespace)
    assert udp_rcvbuf_errors(t.topo.right.namespace) == 0
    assert (child["bytes_in"], child["packets_in"]) == (ss_child.bytes_out, ss_child.packets_out)
    assert child["packets_out"] - ss_child.packets_in == lost_at_peer, (child, ss_child)
    assert lost_at_peer * 40 <= child["bytes_out"] - ss_child.bytes_in <= lost_at_peer * 1399, ss_child
    return child, ss_child


ROLES = pytest.mark.parametrize("ikeguard_initiates", [True, False],
                                ids=["ikeguard-initiator", "strongswan-initiator"])


@ROLES
def test_ping_and_tcp_both_ways_counters_agree(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path, ikeguard_initiates: bool,
) -> None:
    t = open_tunnel(netns_topology("direct"), strongswan_peer, ikeguard_gateway, tmp_path,
                    ikeguard_initiates=ikeguard_initiates)
    ping = t.ping(5)
    assert " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    ns_l, ns_r = t.topo.left.namespace, t.topo.right.namespace
    size = 3_000_000
    sent, got = tcp_transfer(ns_r, t.gw_addr, ns_l, t.peer_addr, size)  # strongSwan -> ikeguard
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    sent, got = tcp_transfer(ns_l, t.peer_addr, ns_r, t.gw_addr, size)  # ikeguard -> strongSwan
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    child, _ = assert_counters_agree(t)
    assert child["bytes_in"] > size and child["bytes_out"] > size  # payload plus inner IP/TCP headers
    assert child["drops"] == {"in": {}, "out": {}}


# --- rekey during traffic ----------------------------------------------------------------------------
def rekey_by_ikeguard(t: Tunnel) -> None:
    assert t.gw.cli("rekey", "--conn", "ikg", "--child", "net", json=False, check=True) is not None


def rekey_by_strongswan(t: Tunnel) -> None:
    t.peer.swanctl("--rekey", "--child", "net")


def _spi_pair(t: Tunnel) -> tuple[str, str]:
    """SPIs of the newest installed Child SA (during a rekey the old one is still listed)."""
    children = [c for sa in t.gw.sas() for c in sa["children"] if c["state"] == "installed"]
    child = max(children, key=lambda c: c["uniqueid"]) if children else {"spi_in": "", "spi_out": ""}
    return child["spi_in"], child["spi_out"]


@pytest.mark.parametrize("rekey", [rekey_by_ikeguard, rekey_by_strongswan], ids=["ikeguard", "strongswan"])
def test_child_rekey_during_tcp_and_udp_stream_loses_nothing(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path, rekey: Callable[[Tunnel], None],
) -> None:
    t = open_tunnel(netns_topology("direct"), strongswan_peer, ikeguard_gateway, tmp_path,
                    ikeguard_initiates=True)
    ns_l, ns_r = t.topo.left.namespace, t.topo.right.namespace
    before = _spi_pair(t)
    count, gap_ms = 2500, 2.0  # ~5 s of numbered datagrams each way
    udp_server = start_tool(ns_r, "udp-serve", t.gw_addr, "5002", "40")
    udp_back = start_tool(ns_l, "udp-serve", t.peer_addr, "5003", "40")
    tcp_server = start_tool(ns_r, "tcp-serve", t.gw_addr, "5001")
    size = 10_000_000  # paced to 16 Mbit/s: ~5 s, strongSwan -> ikeguard
    tcp_client = start_tool(ns_l, "tcp-send", t.peer_addr, t.gw_addr, "5001", str(size), "16")
    udp_client = start_tool(ns_l, "udp-send", t.peer_addr, t.gw_addr, "5002", str(count), str(gap_ms))
    udp_client2 = start_tool(ns_r, "udp-send", t.gw_addr, t.peer_addr, "5003", str(count), str(gap_ms))
    time.sleep(0.8)
    rekey(t)
    assert wait_until(lambda: _spi_pair(t) not in (before, ("", "")), 10), t.gw.sas()
    # the rekey completed while every stream was still running (else this test would prove nothing)
    assert None is tcp_client.poll() is udp_client.poll() is udp_client2.poll()
    for client in (udp_client, udp_client2):
        assert result(client, 60)["sent"] == count
    for server in (udp_server, udp_back):
        stream = result(server, 60)
        assert stream["end_marker"] and stream["expected"] == count
        assert stream["missing"] == [] and stream["duplicates"] == 0, stream
    sent = result(tcp_client, 180)
    got = result(tcp_server, 30)
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    # both sides are on the new SA pair, the old one is gone on both, and the new one carried traffic
    assert wait_until(lambda: len(t.ss_sa().children) == 1 and len(t.gw.sas()[0]["children"]) == 1, 10)
    ss_child = t.ss_sa().child("net")
    after = _spi_pair(t)
    assert after == (f"{ss_child.spi_out:08x}", f"{ss_child.spi_in:08x}") and after != before
    child = t.child()
    assert child["packets_in"] > 300 and child["packets_out"] > 300, child  # the new SA carried the rest
    assert child["drops"] == {"in": {}, "out": {}}
    events = [e["event"] for e in t.gw.audit_events()]
    assert "child.rekeyed" in events


# --- drops: replay, ICV, selectors ---------------------------------------------------------------------
_KEY_LINE = re.compile(r"encryption (initiator|responder) key => (\d+) bytes")


def charon_encryption_keys(log: str) -> dict[str, bytes]:
    """The last CHILD_SA encryption keys charon logged (level 4 ``chd``): {"initiator": k, "responder": k}."""
    keys: dict[str, bytes] = {}
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = _KEY_LINE.search(line)
        if not m:
            continue
        need, data = int(m.group(2)), b""
        for follow in lines[i + 1 :]:
            h = re.search(r"\s\d+: ((?:[0-9A-F]{2} ){1,16})", follow)
            if not h or len(data) >= need:
                break
            data += bytes.fromhex(h.group(1).replace(" ", ""))
        keys[m.group(1)] = data[:need]
    return keys


def forger(t: Tunnel, key: bytes, spi: int) -> OutboundSa:
    """An outbound SA with strongSwan's own key and SPI toward ikeguard, ahead in sequence numbers (20: past
    the 4 pings, yet close enough that strongSwan's next numbers stay inside the 32-packet window)."""
    l_, r = t.topo.left, t.topo.right
    config = sa_from_json({"spi": spi, "direction": "out", "encr": "aes256gcm16", "encr_key": key.hex(),
                           "source": f"{l_.address}:4500", "destination": f"{r.address}:4500",
                           "local_ts": [str(l_.subnet)], "remote_ts": [str(r.subnet)]})
    return OutboundSa(config, lambda e: None, SequenceCounter(start=20))


@ROLES
def test_replayed_corrupted_and_out_of_selector_esp_dropped_and_counted(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path, ikeguard_initiates: bool,
) -> None:
    t = open_tunnel(netns_topology("direct"), strongswan_peer, ikeguard_gateway, tmp_path,
                    ikeguard_initiates=ikeguard_initiates, log_keys=True)
    spi_in = int(t.child()["spi_in"], 16)
    cap = Capture(t.topo.right.namespace, "eth0", "udp dst port 4500", tmp_path / "esp.pcap")
    ping = t.ping(4)
    assert " 0% packet loss" in ping.stdout, ping.stdout
    captured = [p for p in udp_payloads(cap.stop()) if p[:4] == spi_in.to_bytes(4, "big")]
    assert len(captured) == 4  # the four echo requests, as strongSwan sent them
    before = t.child()
    # strongSwan's outbound key is the initiator's key when strongSwan initiated (RFC 7296 §2.17)
    keys = charon_encryption_keys(t.peer.log())
    key = keys["responder" if ikeguard_initiates else "initiator"]
    assert len(key) == 36  # AES-256 key + 4-octet salt (RFC 4106 §8.1)
    sa = forger(t, key, spi_in)
    l_, r = t.topo.left, t.topo.right
    valid = sa.protect(udp4(t.peer_addr, t.gw_addr, 9, 9, b"control: sealed with the real key"))
    corrupted = bytearray(sa.protect(udp4(t.peer_addr, t.gw_addr, 9, 9, b"corrupted in flight")))
    corrupted[-1] ^= 0x01  # last octet of the ICV
    outside = sa.protect(udp4("203.0.113.77", t.gw_addr, 9, 9, b"inner source outside the selectors"))
    wrong_dst = sa.protect(udp4(t.peer_addr, "198.51.100.200", 9, 9, b"inner destination outside"))
    forged = [bytes(corrupted), outside, wrong_dst, valid]
    lines = [p.hex() for p in captured + forged]
    (tmp_path / "inject.hex").write_text("\n".join(lines) + "\n")
    sender = start_tool(l_.namespace, "udp-raw", str(r.address), "4500", str(tmp_path / "inject.hex"))
    assert result(sender, 30)["sent"] == len(lines)
    assert wait_until(lambda: t.child()["packets_in"] > before["packets_in"], 3)
    after = t.child()
    assert after["drops"]["in"] == {"replay": 4, "icv": 1, "selector": 2}, after
    assert after["packets_in"] == before["packets_in"] + 1  # only the valid forged control packet
    assert t.gw.running and t.ping(2).returncode == 0  # and strongSwan's own packets still pass


# --- MTU ---------------------------------------------------------------------------------------------
def _syn_mss(frames: list[bytes]) -> list[int]:
    """MSS options of TCP SYNs in raw-IP frames (TUN capture, link type RAW)."""
    out = []
    for f in frames:
        if len(f) < 40 or f[0] >> 4 != 4 or f[9] != 6:
            continue
        tcp = f[(f[0] & 0x0F) * 4 :]
        if not tcp[13] & 0x02:
            continue
        opts, i = tcp[20 : (tcp[12] >> 4) * 4], 0
        while i < len(opts) and opts[i] != 0:
            if opts[i] == 1:
                i += 1
                continue
            if opts[i] == 2:
                out.append(int.from_bytes(opts[i + 2 : i + 4], "big"))
            i += max(2, opts[i + 1])
    return out


def test_mss_clamped_and_fragmentation_needed_with_the_tunnel_mtu(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    t = open_tunnel(netns_topology("direct"), strongswan_peer, ikeguard_gateway, tmp_path,
                    ikeguard_initiates=True)
    ns_l, ns_r = t.topo.left.namespace, t.topo.right.namespace
    inner_mtu = 1500 - 28 - 37  # path - outer IPv4/UDP - worst-case AES-GCM ESP (8 + 8 IV + 3 pad + 2 + 16)
    # the TUN MTU leaves room for the worst case of every transform: the kernel refuses 1500 octets locally
    assert "mtu 1399 " in ns_r.ip("link", "show", TUN).stdout
    local = ns_r.run("ping", "-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "1", "-I", t.gw_addr,
                     t.peer_addr, check=False)
    assert "mtu=1399" in (local.stdout + local.stderr).replace(" ", ""), local.stdout + local.stderr
    # raised by hand to 1500: ikeguard itself answers with ICMP "fragmentation needed" carrying the SA's
    # exact inner MTU, and clamps TCP SYNs to it (RFC 4459 §3.2, RFC 1191)
    ns_r.ip("link", "set", TUN, "mtu", "1500")
    # TCP first: the ICMP below makes the kernel cache a path MTU, and its own SYNs would then fit
    ours = Capture(ns_r, TUN, "tcp", tmp_path / "ours.pcap")
    theirs = Capture(ns_l, "ipsec0", "tcp", tmp_path / "theirs.pcap")  # strongSwan's libipsec TUN
    size = 2_000_000
    sent, got = tcp_transfer(ns_l, t.peer_addr, ns_r, t.gw_addr, size)  # ikeguard's side connects
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    syn_ours, syn_theirs = _syn_mss(ours.stop()), _syn_mss(theirs.stop())
    assert syn_ours[:1] == [1460]  # what the ikeguard host's kernel wrote into the TUN (MTU 1500)
    assert syn_theirs[:1] == [inner_mtu - 40]  # what came out of the tunnel at strongSwan: clamped
    assert max(syn_theirs) <= inner_mtu - 40
    result_ = ns_r.run("ping", "-n", "-M", "do", "-s", "1472", "-c", "3", "-i", "0.3", "-W", "1", "-I",
                       t.gw_addr, t.peer_addr, check=False)
    text = result_.stdout + result_.stderr
    assert f"mtu = {inner_mtu}" in text, text
    assert t.child()["drops"]["out"].get("too_big", 0) >= 1
    fits = ns_r.run("ping", "-n", "-M", "do", "-s", str(inner_mtu - 28), "-c", "1", "-W", "2", "-I",
                    t.gw_addr, t.peer_addr, check=False)
    assert fits.returncode == 0, fits.stdout + fits.stderr  # exactly the inner MTU passes with DF
    assert "too_big" not in t.child()["drops"]["in"]
