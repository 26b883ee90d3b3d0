"""IKE sockets beside kernel ESP, for real in a namespace the test creates: a NAT-T socket marked for
ESP-in-UDP still receives IKE (non-ESP marker), and a per-socket bypass lets IKE out while
a policy blocks everything else to the peer."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from ikeguard.dataplane.xfrm import XFRM_FEATURES, XfrmDataPlane, bypass_policies, enable_esp_in_udp
from ikeguard.dataplane.xfrm.netlink import run_in_netns
from ikeguard.policy.ts import TrafficSelector
from ikeguard.tools.netns import Namespace, NetnsLab, Topology

pytestmark = pytest.mark.root


@pytest.fixture
def hosts() -> Iterator[Topology]:
    """gw 192.0.2.1 and client 192.0.2.2 in two namespaces on one veth link."""
    with NetnsLab("ikx") as lab:
        yield Topology.two_hosts(lab)


def _udp(ns: Namespace, address: str = "127.0.0.1") -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        sock.settimeout(2)
        return sock

    return run_in_netns(ns.name, make)


def test_esp_in_udp_socket_still_receives_ike(hosts: Topology) -> None:
    ns = hosts.right.namespace
    receiver, sender = _udp(ns), _udp(ns)
    try:
        enable_esp_in_udp(receiver)
        addr = receiver.getsockname()
        sender.sendto(b"\x00\x00\x00\x00" + b"IKE message", addr)  # non-ESP marker: IKE (RFC 3948 §2.2)
        assert receiver.recvfrom(2048)[0] == b"\x00\x00\x00\x00IKE message"
        # the kernel eats NAT keepalives (RFC 3948 §2.3) and takes ESP (non-zero SPI; without a matching
        # state it is dropped): neither reaches the IKE socket, the next IKE message does
        sender.sendto(b"\xff", addr)
        sender.sendto(b"\x00\x00\x12\x34" + bytes(40), addr)
        sender.sendto(b"\x00\x00\x00\x00after", addr)
        assert receiver.recvfrom(2048)[0] == b"\x00\x00\x00\x00after"
    finally:
        receiver.close()
        sender.close()


def test_bypass_lets_ike_out_through_a_blocking_policy(hosts: Topology) -> None:
    ns = hosts.right.namespace
    plane = XfrmDataPlane(netns=ns.name, features=XFRM_FEATURES, events=False)
    here = TrafficSelector(4, 0xC0000201, 0xC0000201)  # 192.0.2.1 (our own outer address)
    peer = TrafficSelector(4, 0xC0000202, 0xC0000202)  # 192.0.2.2
    plain, ike, peer_sock = (
        _udp(ns, "192.0.2.1"),
        _udp(ns, "192.0.2.1"),
        _udp(hosts.left.namespace, "192.0.2.2"),
    )
    try:
        plane.add_policy(1, (here,), (peer,))  # host-to-host selectors cover the IKE traffic too
        bypass_policies(ike)
        dest = peer_sock.getsockname()
        with pytest.raises(OSError) as err:
            plain.sendto(b"blocked", dest)
        assert err.value.errno == errno.EPERM  # the out policy blocks until an SA exists (fail closed)
        ike.sendto(b"\x00\x00\x00\x00IKE_SA_INIT", dest)
        assert peer_sock.recvfrom(2048)[0] == b"\x00\x00\x00\x00IKE_SA_INIT"
    finally:
        for s in (plain, ike, peer_sock):
            s.close()
        plane.flush()
        plane.close()
