"""The small parts of the service on their own: sd_notify, data-plane transform filtering, PKTINFO sockets,
the 4500 demultiplexer, stats and the Child SA driver's policy bookkeeping."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.dataplane.base import DataPlaneFeatures, SaDirection
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.dataplane.userspace.plane import FEATURES as USERSPACE
from ikeguard.engine.events import ChildSaSpec, DeleteChildSa, Direction, Endpoint, InstallChildSa
from ikeguard.policy.proposals import parse_configured
from ikeguard.policy.ts import resolve
from ikeguard.service.dataplane import esp_supported
from ikeguard.service.outputs import ChildSaDriver
from ikeguard.service.sdnotify import notify
from ikeguard.service.sockets import UdpListener
from ikeguard.service.stats import GatewayStats


def test_sd_notify_sends_one_datagram_to_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"
    assert not notify("READY=1", {})  # not under systemd: nothing to do
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def _allowed(proposal: str, features: DataPlaneFeatures) -> bool:
    ok = esp_supported(features)
    return all(ok(t) for t in parse_configured(proposal, "esp").transforms())


def test_only_transforms_the_data_plane_runs_are_offered() -> None:
    # ARCHITECTURE rule 4: the userspace ESP implementation decides
    for proposal in ("aes256gcm16-ecp384", "aes128gcm16", "chacha20poly1305", "aes256-sha384",
                     "aes128-sha256"):
        assert _allowed(proposal, USERSPACE), proposal
    for proposal in ("aes128ccm16", "3des-sha1", "aes256-aesxcbc"):
        assert not _allowed(proposal, USERSPACE), proposal
    assert _allowed("aes128ccm16", NoneDataPlane().features)  # "none" restricts nothing it knows


def test_listener_reports_the_local_address_of_each_datagram() -> None:
    async def main() -> list[tuple[bytes, Endpoint, Endpoint]]:
        got: list[tuple[bytes, Endpoint, Endpoint]] = []
        listener = UdpListener(ipaddress.ip_address("0.0.0.0"), 0, lambda d, lo, re: got.append((d, lo, re)))
        listener.start(asyncio.get_running_loop())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.3", 0))
            peer.sendto(b"hello", ("127.0.0.2", listener.port))
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)
            # the answer leaves from the address the datagram was sent to (PKTINFO on a wildcard socket)
            assert listener.send(b"answer", got[0][1], got[0][2])
            data, source = peer.recvfrom(100)
        listener.close()
        assert (data, source[0]) == (b"answer", "127.0.0.2")
        return got

    [(data, local, remote)] = asyncio.run(main())
    assert data == b"hello" and str(local.address) == "127.0.0.2" and str(remote.address) == "127.0.0.3"


def test_stats_count_exchanges_and_failure_reasons() -> None:
    stats = GatewayStats()
    stats.count_audit(AuditEvent(EventName.IKE_UP, connection="a"))
    stats.count_audit(AuditEvent(EventName.AUTH_FAILURE, Outcome.FAILURE, connection="a"))
    stats.count_audit(AuditEvent(EventName.IKE_FAILED, Outcome.FAILURE, connection="b",
                                 reason="peer unreachable: no response"))
    assert stats.exchanges == {("a", "IKE_AUTH", "success"): 1, ("a", "IKE_AUTH", "failure"): 1,
                               ("b", "IKE_SA_INIT", "failure"): 1}
    assert stats.failures == {("a", "auth_failed"): 1, ("b", "peer_unreachable"): 1}
    assert stats.drop("x") and not stats.drop("x") and stats.dropped["x"] == 2


def _install(child: int, spi: int, direction: Direction, ts: tuple[str, str]) -> InstallChildSa:
    local_ts, remote_ts = resolve([ts[0]], own_address=None), resolve([ts[1]], own_address=None)
    ends = (Endpoint(ipaddress.ip_address("192.0.2.1"), 500),
            Endpoint(ipaddress.ip_address("192.0.2.2"), 500))
    source, dest = ends if direction is Direction.OUTBOUND else ends[::-1]
    spec = ChildSaSpec(spi, 20, 256, 0, False, bytes(36), b"", source, dest, local_ts=local_ts,
                       remote_ts=remote_ts)
    return InstallChildSa(1, child, "net", direction, spec, "aes256gcm16")


def test_driver_keeps_a_gone_child_policy_until_a_new_child_takes_the_selectors() -> None:
    plane = NoneDataPlane()
    driver = ChildSaDriver(plane, GatewayStats())
    ts = ("10.1.0.0/24", "10.2.0.0/24")
    assert driver.install(_install(10, 0x1000, Direction.INBOUND, ts), "c") is None
    assert driver.install(_install(10, 0x2000, Direction.OUTBOUND, ts), "c") is None
    assert set(plane.policies) == {10}
    assert driver.inbound_spi_for(0x2000, SaDirection.OUTBOUND) == 0x1000
    driver.delete(DeleteChildSa(1, 10, Direction.INBOUND, 0x1000, "gone"))
    driver.delete(DeleteChildSa(1, 10, Direction.OUTBOUND, 0x2000, "gone"))
    driver.child_gone(10)
    assert set(plane.policies) == {10} and plane.sas == {}  # fail closed: the policy stays
    driver.install(_install(11, 0x3000, Direction.INBOUND, ts), "c")
    driver.install(_install(11, 0x4000, Direction.OUTBOUND, ts), "c")
    assert set(plane.policies) == {11}  # taken over by the new Child SA
    plane.fail_next_install = "table full"
    error = driver.install(_install(12, 0x5000, Direction.INBOUND, ("10.3.0.0/24", "10.4.0.0/24")), "c")
    assert error is not None and error.reason == "table full" and error.child_uniqueid == 12
    driver.remove_everything()
    assert plane.sas == {} and plane.policies == {}


def test_driver_drops_kept_policies_of_connections_removed_from_the_configuration() -> None:
    plane = NoneDataPlane()
    configured = {"c"}
    driver = ChildSaDriver(plane, GatewayStats(), lambda name: name in configured)
    ts = ("10.1.0.0/24", "10.2.0.0/24")
    driver.install(_install(10, 0x1000, Direction.INBOUND, ts), "c")
    driver.install(_install(10, 0x2000, Direction.OUTBOUND, ts), "c")
    driver.child_gone(10)
    assert set(plane.policies) == {10}  # fail closed while "c" is configured
    configured.clear()  # a reload removed "c"
    driver.release_unconfigured()
    assert plane.policies == {}
    driver.install(_install(11, 0x3000, Direction.INBOUND, ts), "gone")
    driver.install(_install(11, 0x4000, Direction.OUTBOUND, ts), "gone")
    driver.child_gone(11)
    assert plane.policies == {}  # an unconfigured connection's Child SA keeps nothing


def test_initiating_uses_the_listen_address_when_only_that_one_is_bound() -> None:
    from types import SimpleNamespace

    from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
    from ikeguard.service.transport import Transport

    plan: Any = SimpleNamespace(listen=("127.0.0.2",), ike_port=0, natt_port=0, local_addrs={})
    conn = ConnectionSettings("c", (), LocalAuth(AuthKind.PSK, "a"), RemoteAuth(AuthKind.PSK), (),
                              remote_addrs=("127.0.0.1",), remote_port=500)

    async def main() -> tuple[Endpoint, Endpoint]:
        transport = Transport(plan, lambda d, lo, re: None, GatewayStats())
        transport.start(asyncio.get_running_loop(), NoneDataPlane())
        try:
            return transport.endpoints_for("c", conn)
        finally:
            transport.close()

    local, remote = asyncio.run(main())
    # the routing table would pick 127.0.0.1; only 127.0.0.2 is bound, so that is where we send from
    assert (str(local.address), str(remote.address), remote.port) == ("127.0.0.2", "127.0.0.1", 500)
