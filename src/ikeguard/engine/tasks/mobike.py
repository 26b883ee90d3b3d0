"""MOBIKE (RFC 4555) and NAT mapping changes: the SA moves to new addresses and the data plane follows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.engine.events import Endpoint, UpdateSaAddresses
from ikeguard.engine.tasks.base import Status, Task
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
    sa.audit("ike.address_changed", "success", f"now {local} <-> {remote}")


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
        sa.peer.mobike = msg.notify(NotifyType.MOBIKE_SUPPORTED) is not None

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if sa.peer.mobike and sa.conn is not None and sa.conn.mobike:
            msg.add_notify(NotifyType.MOBIKE_SUPPORTED)
        else:
            sa.peer.mobike = False


class MobikeUpdateTask(Task):
    """INFORMATIONAL with UPDATE_SA_ADDRESSES from our new address (RFC 4555 §3.5)."""

    exchange = ExchangeType.INFORMATIONAL

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        from ikeguard.engine.tasks.natd import add_natd

        msg.add_notify(NotifyType.UPDATE_SA_ADDRESSES)
        if sa.peer_natt:
            add_natd(sa, msg, sa.spi_r)  # RFC 4555 §3.5: NAT status is re-evaluated on every move

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        from ikeguard.engine.tasks.natd import check_natd

        check_natd(sa, msg)
        spis = tuple((c.spi_in, c.spi_out) for c in sa.children.values())
        sa.emit(UpdateSaAddresses(sa.uniqueid, sa.local, sa.remote, sa.encap, spis))
        sa.audit("ike.address_changed", "success", f"now {sa.local} <-> {sa.remote}")
        return Status.DONE


class MobikeUpdateResponder(Task):
    """Answers UPDATE_SA_ADDRESSES: NAT status from the request, NAT-D back, data plane moved first."""

    exchange = ExchangeType.INFORMATIONAL

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        from ikeguard.engine.tasks.natd import check_natd

        check_natd(sa, msg)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        from ikeguard.engine.tasks.natd import add_natd

        if sa.peer_natt:
            add_natd(sa, msg, sa.spi_r)
        spis = tuple((c.spi_in, c.spi_out) for c in sa.children.values())
        sa.emit(UpdateSaAddresses(sa.uniqueid, sa.local, sa.remote, sa.encap, spis))
        sa.audit("ike.address_changed", "success", f"peer moved: now {sa.local} <-> {sa.remote}")
