"""NAT detection (RFC 7296 §2.23): NAT_DETECTION_SOURCE/DESTINATION_IP hashes in IKE_SA_INIT; the initiator
moves to port 4500 when a NAT is found or ``encap`` forces UDP encapsulation (sending a fake source hash)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.crypto.keymat import natd_hash
from ikeguard.engine.events import Endpoint
from ikeguard.engine.tasks.base import Status, Task
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

NATT_PORT = 4500


def _hash(spi_i: bytes, spi_r: bytes, endpoint: Endpoint) -> bytes:
    return natd_hash(spi_i, spi_r, endpoint.address, endpoint.port)


def add_natd(sa: IkeSa, msg: OutMessage, spi_r: bytes) -> None:
    """NAT_DETECTION_SOURCE_IP / _DESTINATION_IP for the SA's current endpoints (a fake source if encap)."""
    NatdTask()._add(sa, msg, spi_r)


def add_natd_for(sa: IkeSa, msg: OutMessage, local: Endpoint, remote: Endpoint) -> None:
    """NAT-D notifies for the endpoints a request really used: the destination hash tells the peer how it
    reaches us now, so a MOBIKE initiator behind a NAT sees a changed mapping (RFC 4555 §3.5)."""
    forced = sa.conn is not None and sa.conn.encap
    source = sa.ctx.random.bytes(20) if forced else _hash(sa.spi_i, sa.spi_r, local)
    msg.add_notify(NotifyType.NAT_DETECTION_SOURCE_IP, source)
    msg.add_notify(NotifyType.NAT_DETECTION_DESTINATION_IP, _hash(sa.spi_i, sa.spi_r, remote))


def mapping_changed(sa: IkeSa, msg: InMessage) -> bool:
    """True when the peer's NAT_DETECTION_DESTINATION_IP differs from the one it sent before: the NAT in
    front of us maps us to another address or port now (RFC 4555 §3.5); the new hash is remembered."""
    dest = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if dest is None:
        return False
    before, sa.natd_mapping = sa.natd_mapping, dest.data
    return bool(before) and before != dest.data


def check_natd(sa: IkeSa, msg: InMessage) -> bool:
    """Re-evaluate NAT status from a MOBIKE message's NAT-D notifies; True when they were present."""
    if msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP) is None:
        return False
    NatdTask()._check(sa, msg, sa.spi_r, sa.local, sa.remote)
    sa.encap = sa.nat_local or sa.nat_remote or (sa.conn is not None and sa.conn.encap)
    if sa.nat_local:
        sa.timers.setdefault(Timer.KEEPALIVE, sa.now + sa.ctx.settings.nat_keepalive)
    else:
        sa.timers.pop(Timer.KEEPALIVE, None)
    return True


class NatdTask(Task):
    """Adds and checks the NAT detection notifies; decides on UDP encapsulation."""

    exchange = ExchangeType.IKE_SA_INIT

    def _add(self, sa: IkeSa, msg: OutMessage, spi_r: bytes) -> None:
        forced = sa.conn is not None and sa.conn.encap
        source = sa.ctx.random.bytes(20) if forced else _hash(sa.spi_i, spi_r, sa.local)
        msg.add_notify(NotifyType.NAT_DETECTION_SOURCE_IP, source)
        msg.add_notify(NotifyType.NAT_DETECTION_DESTINATION_IP, _hash(sa.spi_i, spi_r, sa.remote))

    def _check(self, sa: IkeSa, msg: InMessage, spi_r: bytes, local: Endpoint, remote: Endpoint) -> None:
        sources = [n.data for n in msg.notifies() if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
        dest = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not sources or dest is None:
            return  # peer does not do NAT-T; stay on port 500
        sa.peer_natt = True
        sa.nat_remote = _hash(sa.spi_i, spi_r, remote) not in sources
        sa.nat_local = dest.data != _hash(sa.spi_i, spi_r, local)
        sa.natd_mapping = dest.data

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        self._add(sa, msg, b"\0" * 8)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        self._check(sa, msg, sa.spi_r, sa.local, sa.remote)
        forced = sa.conn is not None and sa.conn.encap
        if sa.peer_natt and (sa.nat_local or sa.nat_remote or forced):
            sa.encap = True
            if sa.local.port != NATT_PORT or sa.remote.port != NATT_PORT:
                remote_port = NATT_PORT if sa.remote.port == 500 else sa.remote.port
                sa.local = Endpoint(sa.local.address, NATT_PORT)
                sa.remote = Endpoint(sa.remote.address, remote_port)
                sa.natd_mapping = None  # 4500 gets its own NAT mapping: learnt from the next NAT-D
        if sa.nat_local:
            sa.timers[Timer.KEEPALIVE] = sa.now + sa.ctx.settings.nat_keepalive
        return Status.DONE

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        self._check(sa, msg, b"\0" * 8, sa.local, sa.remote)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if not sa.peer_natt:
            return
        self._add(sa, msg, sa.spi_r)
        if sa.nat_local or sa.nat_remote:
            sa.encap = True
        if sa.nat_local:
            sa.timers[Timer.KEEPALIVE] = sa.now + sa.ctx.settings.nat_keepalive
