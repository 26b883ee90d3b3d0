"""Configuration payload as responder (RFC 7296 §2.19, §3.15): a virtual IP from the connection's pools,
DNS servers, and INTERNAL_IP4/6_SUBNET for a split tunnel.

The peer's CFG_REQUEST comes in the (first) IKE_AUTH request; the address is assigned once every
authentication round succeeded (EAP, RFC 4739), so the lease is keyed by the user: the EAP identity, else
the IKE identity. A RADIUS Framed-IP-Address inside a pool is honoured. The Child SA's ``dynamic`` remote
selector becomes the virtual IP (``IkeSa.virtual_ip``). INTERNAL_IP4/6_SUBNET lists the children's local
selectors unless one of them is the whole address space (a full tunnel). A pool with no free address makes
the Child SA fail with INTERNAL_ADDRESS_FAILURE (§3.10.1: no Child SA in this IKE_AUTH) and a
``child.failed`` record naming the pool and the user.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ikeguard.engine.pools import AddressPool
from ikeguard.engine.tasks.base import Task
from ikeguard.engine.tasks.child_create import local_selectors
from ikeguard.wire.iana import CfgAttr, CfgType, ExchangeType
from ikeguard.wire.payloads import CfgAttribute, CpPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage


def _pool(sa: IkeSa, index: int) -> AddressPool:
    assert sa.conn is not None
    settings = sa.conn.pools[index]
    pool = sa.ctx.pools.get(settings.name)
    if pool is None or pool.settings.network != settings.network:
        pool = sa.ctx.pools[settings.name] = sa.ctx.pool_factory(settings)
    elif pool.settings != settings:
        pool.settings = settings
    return pool


class ConfigTask(Task):
    """CFG_REQUEST -> CFG_REPLY with a virtual IP (responder only)."""

    exchange = ExchangeType.IKE_AUTH

    def __init__(self) -> None:
        self.request: CpPayload | None = None
        self.done = False

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        cp = msg.get(CpPayload)
        if cp is not None and int(cp.cfg_type) == CfgType.REQUEST:
            self.request = cp
        if (sa.rounds is not None and not sa.rounds.finished) or self.request is None or self.done:
            return
        if sa.redirect_in_auth:
            return  # RFC 5685 §6: redirected in IKE_AUTH, no address here
        if sa.conn is None or not sa.conn.pools:
            return
        self.done = True
        wanted = {int(a.type) for a in self.request.attributes}
        families = [v for v, attr in ((4, CfgAttr.INTERNAL_IP4_ADDRESS), (6, CfgAttr.INTERNAL_IP6_ADDRESS))
                    if int(attr) in wanted]
        user = sa.eap_identity or sa.remote_id
        framed = sa.framed_ip
        for version in families:
            candidates = [i for i, p in enumerate(sa.conn.pools) if p.network.version == version]
            for index in candidates:
                pool = _pool(sa, index)
                hint = framed if framed is not None and framed in pool.settings.network else None
                address = pool.acquire(user, hint)
                if address is not None:
                    sa.virtual_ip, sa.vip_pool = address, pool.name
                    sa.auth_details["virtual_ip"] = str(address)
                    return
            if candidates:
                names = ", ".join(sa.conn.pools[i].name for i in candidates)
                sa.vip_failure = f"virtual IP pool {names} exhausted for user {user}"
                return

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if sa.rounds is not None and not sa.rounds.finished:
            return
        if sa.virtual_ip is None or sa.conn is None or not self.done:
            return
        address = sa.virtual_ip
        attrs: list[CfgAttribute] = []
        if address.version == 4:
            attrs.append(CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, address.packed))
        else:
            attrs.append(CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, address.packed + bytes([128])))
        pool = next((p for p in sa.conn.pools if p.name == sa.vip_pool), None)
        for dns in pool.dns if pool is not None else ():
            kind = CfgAttr.INTERNAL_IP4_DNS if dns.version == 4 else CfgAttr.INTERNAL_IP6_DNS
            attrs.append(CfgAttribute(kind, dns.packed))
        attrs.extend(split_subnets(sa))
        msg.add(CpPayload(CfgType.REPLY, tuple(attrs)))
        self.done = False  # one reply


def split_subnets(sa: IkeSa) -> list[CfgAttribute]:
    """INTERNAL_IP4/6_SUBNET for the children's local selectors; none for a full tunnel."""
    assert sa.conn is not None
    selectors = [s for child in sa.conn.children for s in local_selectors(sa, child)]
    out: list[CfgAttribute] = []
    for s in selectors:
        if s.start == 0 and s.end == (1 << (32 if s.version == 4 else 128)) - 1:
            return []  # a full tunnel: everything goes through it
        for net in ipaddress.summarize_address_range(s.start_address, s.end_address):
            if isinstance(net, ipaddress.IPv4Network):
                value = net.network_address.packed + net.netmask.packed
                out.append(CfgAttribute(CfgAttr.INTERNAL_IP4_SUBNET, value))
            else:
                value = net.network_address.packed + bytes([net.prefixlen])
                out.append(CfgAttribute(CfgAttr.INTERNAL_IP6_SUBNET, value))
    return out
