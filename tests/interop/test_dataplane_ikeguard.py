"""Issue 7 "Done when", ikeguard <-> ikeguard: two `ikeguard run` processes with ``dataplane = "userspace"``
in two namespaces (left initiates, right responds).

- ping and TCP transfers both ways, SHA-256 compared on arrival; each side's outbound counters equal the
  other side's inbound counters exactly (bytes and packets; neither kernel dropped a datagram);
- a Child SA rekey started by either gateway (``ikeguard rekey``) during a TCP transfer and numbered UDP
  streams both ways: the transfer verifies, no datagram is missing or duplicated;
- ESP captured on the wire and re-sent is dropped as ``replay``; a captured packet moved ahead in sequence
  numbers with one ciphertext bit flipped fails the ICV and is dropped as ``icv`` without moving the replay
  window (the peer's next real packets still pass). (Inner addresses outside the selectors need an ESP
  packet sealed with the SA's keys, which ikeguard never reveals: that check runs against strongSwan, whose
  test-lab log gives the key, in test_dataplane_strongswan.py.)
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.traffic import Capture, esp_payloads, result, start_tool, tcp_transfer, udp_payloads
from tests.interop.test_dataplane_strongswan import udp_rcvbuf_errors
from tests.service.gwconfig import GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "dataplane-pair-psk-0b7e44c19a3d"
GatewayFactory = Callable[..., GatewayProcess]


@dataclass
class Pair:
    """left (initiator, 198.51.100.128/25) <-> right (responder, 198.51.100.0/25)."""

    topo: Topology
    left: GatewayProcess
    right: GatewayProcess

    @property
    def left_addr(self) -> str:
        return str(self.topo.left.subnet_address)

    @property
    def right_addr(self) -> str:
        return str(self.topo.right.subnet_address)

    def ping(self, count: int = 3) -> Any:
        return self.topo.left.namespace.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I",
                                            self.left_addr, self.right_addr, check=False)


def child_of(gw: GatewayProcess) -> dict[str, Any]:
    """The one Child SA of the one IKE SA."""
    sas = gw.sas()
    assert len(sas) == 1 and len(sas[0]["children"]) == 1, sas
    child: dict[str, Any] = sas[0]["children"][0]
    return child


def _installed(sas: list[dict[str, Any]]) -> bool:
    return len(sas) == 1 and any(c["state"] == "installed" for c in sas[0]["children"])


def open_pair(topo: Topology, ikeguard_gateway: GatewayFactory) -> Pair:
    """Both gateways up; the left one initiates (start_action = start)."""
    left, right = topo.left, topo.right
    responder = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet),
                         str(left.subnet), psk=PSK, dataplane="userspace")
    initiator = GwConfig(str(left.address), str(right.address), CLIENT_FQDN, GW_FQDN, str(left.subnet),
                         str(right.subnet), psk=PSK, dataplane="userspace", start_action="start")
    gw = ikeguard_gateway(right.namespace, "right", responder.text(), responder.files())
    client = ikeguard_gateway(left.namespace, "left", initiator.text(), initiator.files())
    client.wait_sas(_installed, timeout=15)
    gw.wait_sas(_installed, timeout=5)
    return Pair(topo, client, gw)


def assert_counters_agree(p: Pair) -> tuple[dict[str, Any], dict[str, Any]]:
    """Left's outbound = right's inbound and vice versa, bytes and packets, same SPIs."""
    time.sleep(0.3)
    lc, rc = child_of(p.left), child_of(p.right)
    assert (lc["spi_out"], lc["spi_in"]) == (rc["spi_in"], rc["spi_out"])
    assert udp_rcvbuf_errors(p.topo.left.namespace) == udp_rcvbuf_errors(p.topo.right.namespace) == 0
    assert (lc["bytes_out"], lc["packets_out"]) == (rc["bytes_in"], rc["packets_in"])
    assert (rc["bytes_out"], rc["packets_out"]) == (lc["bytes_in"], lc["packets_in"])
    return lc, rc


def test_ping_and_tcp_both_ways_counters_agree(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    p = open_pair(netns_topology("direct"), ikeguard_gateway)
    ping = p.ping(5)
    assert " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    ns_l, ns_r = p.topo.left.namespace, p.topo.right.namespace
    size = 4_000_000
    sent, got = tcp_transfer(ns_r, p.right_addr, ns_l, p.left_addr, size)
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    sent, got = tcp_transfer(ns_l, p.left_addr, ns_r, p.right_addr, size)
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    lc, rc = assert_counters_agree(p)
    assert lc["bytes_out"] > size and rc["bytes_out"] > size
    assert lc["drops"] == rc["drops"] == {"in": {}, "out": {}}


def _newest_spis(gw: GatewayProcess) -> tuple[str, str]:
    children = [c for sa in gw.sas() for c in sa["children"] if c["state"] == "installed"]
    child = max(children, key=lambda c: c["uniqueid"]) if children else {"spi_in": "", "spi_out": ""}
    return child["spi_in"], child["spi_out"]


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_child_rekey_during_tcp_and_udp_streams_loses_nothing(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory, side: str
) -> None:
    p = open_pair(netns_topology("direct"), ikeguard_gateway)
    ns_l, ns_r = p.topo.left.namespace, p.topo.right.namespace
    before = _newest_spis(p.left)
    count, gap_ms = 2500, 2.0
    servers = [start_tool(ns_r, "udp-serve", p.right_addr, "5002", "40"),
               start_tool(ns_l, "udp-serve", p.left_addr, "5003", "40")]
    tcp_server = start_tool(ns_r, "tcp-serve", p.right_addr, "5001")
    size = 10_000_000
    tcp_client = start_tool(ns_l, "tcp-send", p.left_addr, p.right_addr, "5001", str(size), "16")
    clients = [start_tool(ns_l, "udp-send", p.left_addr, p.right_addr, "5002", str(count), str(gap_ms)),
               start_tool(ns_r, "udp-send", p.right_addr, p.left_addr, "5003", str(count), str(gap_ms))]
    time.sleep(0.8)
    rekeying = p.left if side == "initiator" else p.right
    assert rekeying.cli("rekey", "--conn", "ikg", "--child", "net", json=False) is not None
    assert wait_until(lambda: _newest_spis(p.left) not in (before, ("", "")), 10), p.left.sas()
    assert tcp_client.poll() is None and all(c.poll() is None for c in clients)  # rekeyed mid-stream
    for client in clients:
        assert result(client, 60)["sent"] == count
    streams = [result(server, 60) for server in servers]  # [left -> right, right -> left]
    for stream in streams:
        assert stream["end_marker"] and stream["expected"] == count
        assert stream["missing"] == [] and stream["duplicates"] == 0, streams
    sent, got = result(tcp_client, 180), result(tcp_server, 30)
    assert got == {"bytes": size, "sha256": sent["sha256"]}
    assert wait_until(lambda: all(len(gw.sas()[0]["children"]) == 1 for gw in (p.left, p.right)), 10)
    lc, rc = assert_counters_agree(p)  # the new SA pair, counted alike on both sides
    assert (lc["spi_in"], lc["spi_out"]) != before
    assert lc["packets_out"] > 300 and rc["packets_out"] > 300
    assert lc["drops"] == rc["drops"] == {"in": {}, "out": {}}
    assert any(e["event"] == "child.rekeyed" for e in rekeying.audit_events())


def test_replayed_and_corrupted_esp_dropped_and_counted(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory, tmp_path: Path
) -> None:
    p = open_pair(netns_topology("direct"), ikeguard_gateway)
    spi = bytes.fromhex(child_of(p.right)["spi_in"])
    bpf = f"dst host {p.topo.right.address} and (udp dst port 4500 or ip proto 50)"
    cap = Capture(p.topo.right.namespace, "eth0", bpf, tmp_path / "esp.pcap")
    assert p.ping(4).returncode == 0
    frames = cap.stop()
    captured = [d for d in esp_payloads(frames) if d[:4] == spi]
    in_udp = bool(udp_payloads(frames))  # no NAT between two ikeguards: plain ESP (IP protocol 50)
    assert len(captured) == 4
    before = child_of(p.right)
    corrupted = bytearray(captured[-1])
    seq = struct.unpack_from("!I", corrupted, 4)[0]
    struct.pack_into("!I", corrupted, 4, seq + 10)  # fresh for the window: only the ICV can reject it
    corrupted[20] ^= 0x01  # one ciphertext bit
    lines = [d.hex() for d in captured] + [bytes(corrupted).hex()]
    (tmp_path / "inject.hex").write_text("\n".join(lines) + "\n")
    target = str(p.topo.right.address)
    how = ("udp-raw", target, "4500") if in_udp else ("esp-raw", target)
    sender = start_tool(p.topo.left.namespace, *how, str(tmp_path / "inject.hex"))
    assert result(sender, 30)["sent"] == 5
    assert wait_until(lambda: sum(child_of(p.right)["drops"]["in"].values()) >= 5, 3)
    after = child_of(p.right)
    assert after["drops"]["in"] == {"replay": 4, "icv": 1}, after
    assert after["packets_in"] == before["packets_in"]  # none of them reached the TUN
    assert p.ping(3).returncode == 0  # the forgery did not move the window: seq+1.. still accepted
    assert child_of(p.right)["packets_in"] == before["packets_in"] + 3
