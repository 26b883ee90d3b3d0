"""The XFRM plane's request sequences on the paths this machine's kernel cannot run (it has no ESP):
installing SAs, make-before-break, counters, delete, MOBIKE/NAT-T moves and lifetime expiry, against the
in-memory SAD/SPD of ``memkernel`` (the real-kernel tests in test_kernel.py cover what can run here)."""

from __future__ import annotations

import ipaddress

from ikeguard.dataplane.base import DataPlaneEvent, LifetimeReached, SaDirection, SaEndpoint
from ikeguard.dataplane.xfrm import XFRM_FEATURES, XfrmDataPlane
from ikeguard.dataplane.xfrm.structs import (
    XFRM_MSG_EXPIRE,
    XFRM_POLICY_ALLOW,
    XFRM_POLICY_BLOCK,
    XFRMA_LTIME_VAL,
    XFRMA_REPLAY_VAL,
    LifetimeCfg,
    LifetimeCur,
    Selector,
    UsersaInfo,
    XfrmId,
)
from tests.dataplane.xfrm.memkernel import MemKernel
from tests.dataplane.xfrm.sas import GW, PEER, gcm_udp_sa

NEW_PEER = ipaddress.ip_address("203.0.113.9")


def _plane() -> tuple[XfrmDataPlane, MemKernel, list[DataPlaneEvent]]:
    kernel = MemKernel()
    plane = XfrmDataPlane(features=XFRM_FEATURES, sock=kernel, monitor=kernel)
    events: list[DataPlaneEvent] = []
    plane.subscribe(events.append)
    return plane, kernel, events


def _out_policy(kernel: MemKernel) -> tuple[int, str, str]:
    (pol,) = [p for (_s, d), p in kernel.policies.items() if d == 1]
    assert pol.tmpl is not None
    return pol.info.action, str(pol.tmpl.saddr), str(pol.tmpl.id.daddr)


def test_child_sa_install_replaces_the_larval_state_and_opens_the_out_policy_last() -> None:
    plane, kernel, _ = _plane()
    spi_in = plane.alloc_spi()
    assert (ipaddress.ip_address("0.0.0.0"), spi_in) in kernel.states
    plane.add_sa(gcm_udp_sa(SaDirection.INBOUND, spi=spi_in))
    assert (ipaddress.ip_address("0.0.0.0"), spi_in) not in kernel.states  # larval gone, real one in
    assert kernel.states[(GW, spi_in)].info.reqid == 1
    assert _out_policy(kernel) == (XFRM_POLICY_BLOCK, "192.0.2.1", "203.0.113.2")  # no outbound SA yet
    kernel.log.clear()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x5000))
    assert kernel.log == ["NEWSA", "UPDPOLICY", "UPDPOLICY", "UPDPOLICY"]  # state first, then allow
    assert _out_policy(kernel) == (XFRM_POLICY_ALLOW, "192.0.2.1", "203.0.113.2")
    assert kernel.states[(PEER, 0x5000)].encap is not None


def test_transport_mode_sas_get_transport_templates() -> None:
    plane, kernel, _ = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x5000, mode="transport", encap=False))
    assert kernel.states[(PEER, 0x5000)].info.mode == 0
    assert {p.tmpl.mode for p in kernel.policies.values() if p.tmpl is not None} == {0}


def test_rekey_is_make_before_break_and_delete_reports_final_counters() -> None:
    plane, kernel, _ = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x5000, child_uniqueid=3))
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x6000, child_uniqueid=4))  # rekeyed Child SA
    assert kernel.states[(PEER, 0x5000)].info.reqid == kernel.states[(PEER, 0x6000)].info.reqid == 1
    assert len(kernel.policies) == 3  # shared, not duplicated
    kernel.count(PEER, 0x5000, 123_456, 789, (1, 2, 3))
    counters = plane.counters(0x5000, SaDirection.OUTBOUND)
    assert counters is not None and (counters.bytes, counters.packets) == (123_456, 789)
    assert counters.drops == {"replay_window": 1, "replay": 2, "integrity": 3}
    final = plane.delete_sa(0x5000, SaDirection.OUTBOUND)
    assert final is not None and final.bytes == 123_456
    assert (PEER, 0x5000) not in kernel.states and (PEER, 0x6000) in kernel.states
    assert len(kernel.policies) == 3  # fail closed: policies stay
    assert plane.delete_sa(0x5000, SaDirection.OUTBOUND) is None
    plane.remove_policy(3)
    assert len(kernel.policies) == 3  # still used by Child SA 4
    plane.remove_policy(4)
    assert kernel.policies == {}


def test_nat_port_change_updates_states_in_place() -> None:
    plane, kernel, _ = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.INBOUND, spi=0x4000))
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x5000))
    kernel.log.clear()
    plane.update_sa_addresses((0x4000, 0x5000), SaEndpoint(GW, 4500), SaEndpoint(PEER, 40000), True)
    assert kernel.log.count("UPDSA") == 2 and "NEWSA" not in kernel.log
    out_encap = kernel.states[(PEER, 0x5000)].encap
    in_encap = kernel.states[(GW, 0x4000)].encap
    assert out_encap is not None and (out_encap.sport, out_encap.dport) == (4500, 40000)
    assert in_encap is not None and (in_encap.sport, in_encap.dport) == (40000, 4500)


def test_mobike_address_change_re_adds_states_with_their_replay_state_and_counters() -> None:
    plane, kernel, _ = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.INBOUND, spi=0x4000))
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x5000))
    kernel.count(PEER, 0x5000, 1000, 10, (0, 0, 0))
    plane.update_sa_addresses((0x4000, 0x5000), SaEndpoint(GW, 4500), SaEndpoint(NEW_PEER, 4500), True)
    assert (PEER, 0x5000) not in kernel.states
    moved = kernel.states[(NEW_PEER, 0x5000)]
    assert str(moved.info.saddr) == "192.0.2.1"
    assert XFRMA_REPLAY_VAL in moved.attrs  # sequence numbers continue (no reuse of AEAD nonces)
    assert LifetimeCur.unpack(moved.attrs[XFRMA_LTIME_VAL]).byte_count == 1000  # counters continue
    inbound = kernel.states[(GW, 0x4000)]
    assert str(inbound.info.saddr) == "203.0.113.9"
    assert _out_policy(kernel) == (XFRM_POLICY_ALLOW, "192.0.2.1", "203.0.113.9")
    tmpl_in = [p.tmpl for (_s, d), p in kernel.policies.items() if d != 1]
    assert all(t is not None and str(t.saddr) == "203.0.113.9" for t in tmpl_in)
    counters = plane.counters(0x5000, SaDirection.OUTBOUND)
    assert counters is not None  # the plane follows the moved state


def test_kernel_expire_becomes_rekey_then_delete_upcalls() -> None:
    plane, kernel, events = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=0x5000, soft_bytes=900, hard_bytes=1000))
    state = UsersaInfo(
        Selector(), XfrmId(PEER, 0x5000), GW, 2, lft=LifetimeCfg(900, 1000), curlft=LifetimeCur(950, 3)
    )
    kernel.events.append((XFRM_MSG_EXPIRE, state.pack() + b"\x00" + bytes(7)))
    assert plane.poll_events() == 1
    assert events == [LifetimeReached(0x5000, SaDirection.OUTBOUND, False, "bytes", 3)]
    kernel.events.append((XFRM_MSG_EXPIRE, state.pack() + b"\x01" + bytes(7)))
    kernel.events.append((XFRM_MSG_EXPIRE, b"garbage"))  # a malformed notification is dropped, not raised
    assert plane.poll_events() == 1
    assert events[-1] == LifetimeReached(0x5000, SaDirection.OUTBOUND, True, "bytes", 3)
    assert plane.counters(0x5000, SaDirection.OUTBOUND) is None  # forgotten: the kernel removed it
