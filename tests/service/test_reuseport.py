"""Issue 22 item 1: the kernel's SO_REUSEPORT group with our classic-BPF program steers every datagram of one
IKE SA to the socket of the worker named in our SPI, also after NAT-T port floating (500 -> 4500 with the
non-ESP marker, new source port) and a MOBIKE address change; IKE_SA_INIT requests are spread by source
address; ESP on 4500 reaches the data plane's socket. Real sockets on loopback, real kernel (no mock)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import select
import socket
import struct

import pytest

from ikeguard.engine.context import EngineContext
from ikeguard.service.reuseport import assemble, open_group, spread_index, steering_program, tag_spi
from ikeguard.service.sockets import UdpListener

WORKERS = 3
MARKER = b"\0\0\0\0"


def _ike(spi_i: bytes, spi_r: bytes, *, initiator: bool, exchange: int = 35, response: bool = False) -> bytes:
    flags = (0x08 if initiator else 0) | (0x20 if response or not initiator else 0)
    return spi_i + spi_r + struct.pack("!BBBBII", 46, 0x20, exchange, flags, 1, 28 + 8) + bytes(8)


def _receiver(group: list[socket.socket], timeout: float = 2.0) -> int:
    """Index in ``group`` of the one socket that got the datagram (and drain it)."""
    ready, _, _ = select.select(group, [], [], timeout)
    assert len(ready) == 1, f"{len(ready)} sockets readable"
    index = group.index(ready[0])
    ready[0].recv(65535)
    return index


def _sender(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


@pytest.fixture
def groups() -> object:
    ike = open_group("127.0.0.1", 0, WORKERS, natt=False)
    natt = open_group("127.0.0.1", 0, WORKERS, natt=True, esp_socket=True)
    yield ike, natt
    for sock in ike + natt:
        sock.close()


def _send(sock: socket.socket, data: bytes, group: list[socket.socket]) -> int:
    sock.sendto(data, group[0].getsockname())
    return _receiver(group)


Groups = tuple[list[socket.socket], list[socket.socket]]


def test_one_ike_sa_always_reaches_its_worker(groups: Groups) -> None:
    ike, natt = groups
    for worker in range(WORKERS):
        ours = tag_spi(os.urandom(8), worker)
        theirs = os.urandom(8)
        seen = set()
        # the peer initiated: our SPI is the responder SPI; IKE_AUTH on 500 from a first port
        with _sender("127.0.0.2") as peer:
            seen.add(_send(peer, _ike(theirs, ours, initiator=True), ike))
        # NAT-T port floating: 4500 with the marker, from another source port (a NAT's new mapping)
        for _ in range(8):
            with _sender("127.0.0.2") as floated:
                seen.add(_send(floated, MARKER + _ike(theirs, ours, initiator=True), natt))
        # MOBIKE: the peer moved to another address (UPDATE_SA_ADDRESSES and everything after it)
        with _sender("127.0.0.3") as moved:
            seen.add(_send(moved, MARKER + _ike(theirs, ours, initiator=True, exchange=37), natt))
            # the peer's responses to our requests (our DPD, our rekey) keep its Initiator flag
            seen.add(_send(moved, MARKER + _ike(theirs, ours, initiator=True, response=True), natt))
        assert seen == {worker}
        # an SA we initiated: our SPI is the initiator SPI, the peer's responses carry no Initiator flag
        mine = tag_spi(os.urandom(8), worker)
        seen = set()
        for source in ("127.0.0.4", "127.0.0.5", "127.0.0.6"):
            with _sender(source) as peer:
                seen.add(_send(peer, _ike(mine, os.urandom(8), initiator=False), ike))
                seen.add(_send(peer, MARKER + _ike(mine, os.urandom(8), initiator=False), natt))
        assert seen == {worker}


def test_ike_sa_init_spread_by_source_esp_to_the_data_plane(
        groups: tuple[list[socket.socket], list[socket.socket]]) -> None:
    ike, natt = groups
    used = set()
    for last in range(2, 40):
        spi_i = os.urandom(8)
        with _sender(f"127.0.0.{last}") as a, _sender(f"127.0.0.{last}") as b:
            first = _send(a, _ike(spi_i, bytes(8), initiator=True, exchange=34), ike)
            # retransmission / COOKIE retry from another port of the same address: the same worker
            assert _send(b, _ike(spi_i, bytes(8), initiator=True, exchange=34), ike) == first
            assert _send(a, MARKER + _ike(spi_i, bytes(8), initiator=True, exchange=34), natt) == first
            assert _send(a, b"\xff", natt) == first  # NAT keepalive: spread like IKE_SA_INIT
            # ESP in UDP (non-zero SPI first): the data plane's socket, after the workers'
            assert _send(a, struct.pack("!II", 0xC0000001, 1) + os.urandom(40), natt) == WORKERS
        used.add(first)
    assert used == set(range(WORKERS))  # 38 sources over 3 workers
    # a worker id beyond the group (an SPI from before a restart with fewer workers): spread, not dropped
    with _sender("127.0.0.2") as peer:
        assert _send(peer, _ike(os.urandom(8), tag_spi(os.urandom(8), 200), initiator=True), ike) < WORKERS


def test_program_shape_and_engine_spis() -> None:
    code = assemble(steering_program(socket.AF_INET6, 2, natt=True, esp_index=2))
    assert 20 < len(code) < 64
    with pytest.raises(ValueError):
        steering_program(socket.AF_INET, 0, natt=False)
    from ikeguard.crypto.random import SystemRandom

    ctx = EngineContext(settings=None, random=SystemRandom(), validator=None, connections={})  # type: ignore[arg-type]
    assert ctx.ike_spi() != ctx.ike_spi()
    ctx.worker_id = 7
    assert {ctx.ike_spi()[0] for _ in range(20)} == {7}


def _init(spi_i: bytes, first: bytes = b"") -> bytes:
    """An IKE_SA_INIT request whose chain starts with ``first`` (a Notify payload) when given."""
    body = first + bytes(40)
    header = struct.pack("!BBBBII", 41 if first else 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return spi_i + bytes(8) + header + body


def _notify(kind: int) -> bytes:
    data = os.urandom(33)
    return struct.pack("!BBHBBH", 33, 0, 8 + len(data), 0, 0, kind) + data


@pytest.fixture
def priority_groups() -> object:
    ike = open_group("127.0.0.1", 0, WORKERS, natt=False, priority=True)
    natt = open_group("127.0.0.1", 0, WORKERS, natt=True, esp_socket=True, priority=True)
    yield ike, natt
    for sock in ike + natt:
        sock.close()


def test_priority_sockets_get_all_but_cookieless_ike_sa_init(priority_groups: Groups) -> None:
    """Issue 22, half-open flood: a new IKE_SA_INIT request without a COOKIE reaches the bulk socket of the
    worker its source spreads to (index N + w); its retry with the COOKIE (first payload, RFC 7296 §2.6),
    IKE_AUTH and everything else of an IKE SA the priority socket of the worker (index w), on 500 and on 4500
    (non-ESP marker); keepalives and SPIs naming no worker the bulk sockets; ESP the data plane's."""
    ike, natt = priority_groups
    cookie, other = _notify(16390), _notify(16388)  # COOKIE; NAT_DETECTION_SOURCE_IP
    for last in range(2, 14):
        source = f"127.0.0.{last}"
        worker = spread_index(source, WORKERS)
        spi_i = os.urandom(8)
        with _sender(source) as peer:
            for group, marker in ((ike, b""), (natt, MARKER)):
                assert _send(peer, marker + _init(spi_i), group) == WORKERS + worker
                assert _send(peer, marker + _init(spi_i, other), group) == WORKERS + worker
                assert _send(peer, marker + _init(spi_i, cookie), group) == worker
                assert _send(peer, marker + _init(spi_i, cookie)[:35], group) == WORKERS + worker  # cut short
                for owner in range(WORKERS):
                    ours = tag_spi(os.urandom(8), owner)
                    assert _send(peer, marker + _ike(spi_i, ours, initiator=True), group) == owner
                    assert _send(peer, marker + _ike(ours, spi_i, initiator=False), group) == owner
                stranger = tag_spi(os.urandom(8), 200)
                assert _send(peer, marker + _ike(spi_i, stranger, initiator=True), group) == WORKERS + worker
            assert _send(peer, b"\xff", natt) == WORKERS + worker  # NAT keepalive
            assert _send(peer, struct.pack("!II", 0xC0000001, 1) + os.urandom(40), natt) == 2 * WORKERS


def test_listener_drains_priority_first_and_answers_bulk_quickly() -> None:
    """The worker's side (service/sockets.py), with the real kernel steering: datagrams queued on the priority
    socket reach the handler before those on the bulk socket; bulk datagrams the quick answerer answers go
    back on the socket with the non-ESP marker (4500) and never reach the handler, the ones it declines do."""
    prio, bulk = open_group("127.0.0.1", 0, 1, natt=True, priority=True)
    order: list[str] = []

    def quick(data: bytes, host: str, port: int) -> bytes | None:
        assert host == "127.0.0.7" and data[18] == 34  # the marker removed
        if data[0] == 0xEE:
            return None
        order.append("quick")
        return b"answer"

    def handler(data: bytes, local: object, remote: object) -> None:
        order.append("init" if data[4 + 18] == 34 else "priority")

    async def main() -> list[bytes]:
        listener = UdpListener(ipaddress.ip_address("127.0.0.1"), 0, handler, prio, bulk=bulk, quick=quick,
                               marker=True)
        answers = []
        with _sender("127.0.0.7") as peer:
            port = prio.getsockname()
            for _ in range(3):
                peer.sendto(MARKER + _init(os.urandom(8)), port)
            peer.sendto(MARKER + _init(b"\xee" + os.urandom(7)), port)
            for _ in range(3):
                peer.sendto(MARKER + _ike(os.urandom(8), tag_spi(os.urandom(8), 0), initiator=True), port)
            for sock in (prio, bulk):  # everything queued before the loop reads
                assert select.select([sock], [], [], 2.0)[0]
            listener.start(asyncio.get_running_loop())
            for _ in range(300):
                if len(order) >= 7:
                    break
                await asyncio.sleep(0.01)
            peer.settimeout(2.0)
            for _ in range(3):
                answers.append(peer.recv(100))
        listener.close()
        return answers

    answers = asyncio.run(main())
    assert answers == [MARKER + b"answer"] * 3
    assert order[:3] == ["priority"] * 3
    assert sorted(order[3:]) == ["init", "quick", "quick", "quick"]


def test_a_group_is_only_made_on_a_free_port() -> None:
    """A second gateway on the same address and port fails to bind (service/sockets.py's rule) rather than
    joining the first one's SO_REUSEPORT group and receiving part of its traffic."""
    first = open_group("127.0.0.1", 0, 1, natt=False, priority=True)
    try:
        port = first[0].getsockname()[1]
        with pytest.raises(OSError):
            open_group("127.0.0.1", port, 1, natt=False, priority=True)
        with pytest.raises(OSError):
            open_group("127.0.0.1", port, 2, natt=False)
    finally:
        for sock in first:
            sock.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            open_group("127.0.0.1", plain.getsockname()[1], 1, natt=False, priority=True)
