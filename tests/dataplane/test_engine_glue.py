"""The engine's InstallChildSa output installs as-is into the data plane (via SaConfig.from_install)."""

from __future__ import annotations

import ipaddress
import os

import pytest

from ikeguard.dataplane.base import SaConfig, SaDirection
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.dataplane.table import SaTable, Send
from ikeguard.dataplane.userspace.plane import FEATURES
from ikeguard.engine.events import ChildSaSpec, Direction, Endpoint, InstallChildSa
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import EncrId
from tests.dataplane.packets import udp4

LEFT = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/24"))
RIGHT = TrafficSelector.for_network(ipaddress.ip_network("203.0.113.0/24"))
A = Endpoint(ipaddress.ip_address("192.0.2.1"), 4500)
B = Endpoint(ipaddress.ip_address("192.0.2.2"), 4500)


def _install(direction: Direction, encr_id: int, bits: int, key: bytes, us: str) -> InstallChildSa:
    inbound = direction is Direction.INBOUND
    local, remote = (A, B) if us == "a" else (B, A)
    lts, rts = (LEFT, RIGHT) if us == "a" else (RIGHT, LEFT)
    spec = ChildSaSpec(0x4242, encr_id, bits, 0, False, key, b"", remote if inbound else local,
                       local if inbound else remote, True, "tunnel", 64, (lts,), (rts,))
    return InstallChildSa(1, 2, "net", direction, spec, "aes256gcm16", rekey_packets=10)


@pytest.mark.parametrize("encr_id,bits", [(EncrId.AES_GCM_16, 256), (EncrId.CHACHA20_POLY1305, 256)])
def test_engine_install_events_carry_traffic(encr_id: int, bits: int) -> None:
    key = os.urandom(36)
    a, b = SaTable(), SaTable()
    a.add_sa(SaConfig.from_install(_install(Direction.OUTBOUND, encr_id, bits, key, "a")))
    b_in = SaConfig.from_install(_install(Direction.INBOUND, encr_id, bits, key, "b"))
    assert b_in.direction is SaDirection.INBOUND and b_in.soft_packets == 10 and b_in.child_uniqueid == 2
    assert "encr_key=" not in repr(b_in) and key.hex() not in repr(b_in)
    b.add_sa(b_in)
    inner = udp4("198.51.100.5", "203.0.113.5", 1, 2, b"hello")
    sent = a.outbound(inner)
    assert isinstance(sent, Send) and sent.destination.address == B.address
    assert b.inbound(sent.data) == inner


def test_features_list_what_the_userspace_backend_implements() -> None:
    assert (EncrId.AES_GCM_16, 256) in FEATURES.encr and (EncrId.CHACHA20_POLY1305, None) in FEATURES.encr
    assert (EncrId.AES_CCM_16, 256) not in FEATURES.encr  # registry knows it, this backend does not
    assert FEATURES.udp_encap and FEATURES.esn and not FEATURES.transport_mode


def test_none_backend_records_without_keys() -> None:
    plane = NoneDataPlane()
    spi = plane.alloc_spi()
    assert spi >= 256
    cfg = SaConfig.from_install(_install(Direction.INBOUND, EncrId.AES_GCM_16, 256, os.urandom(36), "a"))
    plane.add_sa(cfg)
    plane.fail_next_install = "no memory"
    events: list[object] = []
    plane.subscribe(events.append)
    with pytest.raises(Exception, match="no memory"):
        plane.add_sa(cfg)
    assert len(events) == 1
    assert plane.delete_sa(cfg.spi, SaDirection.INBOUND) is not None
    assert [c.method for c in plane.calls] == ["alloc_spi", "add_sa", "add_sa", "delete_sa"]
    assert cfg.encr_key.hex() not in repr(plane.calls)
