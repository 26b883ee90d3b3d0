"""MOBIKE (RFC 4555) and NAT mapping changes: the SA moves to new addresses and the data plane follows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine.events import Endpoint, UpdateSaAddresses
from ikeguard.engine.tasks.base import Status, Task
from ikeguard.engine.tasks.natd import add_natd, check_natd
from ikeguard.wire.iana import ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage


def update_addresses(sa: IkeSa, local: Endpoint, remote: Endpoint) -> None:
    """Move the IKE SA and its Child SAs to ``local``/``remote`` and tell the data plane."""
    if (local, remote) == (sa.local, sa.remote):
        return
    sa.local, sa.remote = local, remote
    spis = tuple((c.spi_in, c.spi_out) for c in sa.children.values())
    sa.emit(UpdateSaAddresses(sa.uniqueid, local, remote, sa.encap, spis))
    sa.audit(EventName.IKE_ADDRESS_CHANGED, Outcome.SUCCESS, f"now {local} <-> {remote}")


class MobikeTask(Task):
    """MOBIKE_SUPPORTED in IKE_AUTH (RFC 4555 §3.1): both ends must announce it."""

    exchange = ExchangeType.IKE_AUTH

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        if sa.conn is not None and sa.conn.mobike:
            msg.add_notify(NotifyType.MOBIKE_SUPPORTED)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        sa.peer.mobike = (
            sa.conn is not None and sa.conn.mobike and msg.notify(NotifyType.MOBIKE_SUPPORTED) is not None
        )
        return Status.DONE

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        # with EAP rounds the notify comes in the first of several IKE_AUTH requests (RFC 7296 §2.16)
        sa.peer.mobike = sa.peer.mobike or msg.notify(NotifyType.MOBIKE_SUPPORTED) is not None

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if sa.rounds is not None and not sa.rounds.finished:
            return
        if sa.peer.mobike and sa.conn is not None and sa.conn.mobike:
            msg.add_notify(NotifyType.MOBIKE_SUPPORTED)
        else:
            sa.peer.mobike = False


class MobikeUpdateTask(Task):
    """INFORMATIONAL with UPDATE_SA_ADDRESSES from our new address (RFC 4555 §3.5)."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self.cookie2 = b""

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        msg.add_notify(NotifyType.UPDATE_SA_ADDRESSES)
        self.cookie2 = sa.ctx.random.bytes(16)
        msg.add_notify(NotifyType.COOKIE2, self.cookie2)  # RFC 4555 §3.5 return routability
        if sa.peer_natt:
            add_natd(sa, msg, sa.spi_r)  # RFC 4555 §3.5: NAT status is re-evaluated on every move

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        echoed = msg.notify(NotifyType.COOKIE2)
        if echoed is None or echoed.data != self.cookie2:
            sa.audit(EventName.IKE_ADDRESS_CHANGED, Outcome.FAILURE,
                     "peer did not echo COOKIE2 (RFC 4555 §3.5)")
            return Status.DONE
        check_natd(sa, msg)
        spis = tuple((c.spi_in, c.spi_out) for c in sa.children.values())
        sa.emit(UpdateSaAddresses(sa.uniqueid, sa.local, sa.remote, sa.encap, spis))
        sa.audit(EventName.IKE_ADDRESS_CHANGED, Outcome.SUCCESS, f"now {sa.local} <-> {sa.remote}")
        return Status.DONE


class MobikeUpdateResponder(Task):
    """Answers UPDATE_SA_ADDRESSES: NAT status from the request, NAT-D back, data plane moved first."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self.cookie2: bytes | None = None

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        cookie2 = msg.notify(NotifyType.COOKIE2)
        if cookie2 is not None and 8 <= len(cookie2.data) <= 64:
            self.cookie2 = cookie2.data
        check_natd(sa, msg)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if self.cookie2 is not None:
            msg.add_notify(NotifyType.COOKIE2, self.cookie2)
        if sa.peer_natt:
            add_natd(sa, msg, sa.spi_r)
        spis = tuple((c.spi_in, c.spi_out) for c in sa.children.values())
        sa.emit(UpdateSaAddresses(sa.uniqueid, sa.local, sa.remote, sa.encap, spis))
        sa.audit(EventName.IKE_ADDRESS_CHANGED, Outcome.SUCCESS,
                 f"peer moved: now {sa.local} <-> {sa.remote}")
