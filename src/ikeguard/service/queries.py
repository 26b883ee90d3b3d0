"""Answers to ``sas`` and ``conns`` in the shape docs/reference.md fixes ("JSON output"):
SPIs as 8 lowercase hex digits, RFC 3339 UTC times, byte/packet counters from the data plane.

At a processor's scale (100,000 IKE SAs, issue 22) nothing here builds more than it is asked for: ``sas``
selects and pages the IKE SAs first and builds the views of the page only, a chunk at a time
(:func:`sa_info_chunks`, so the control socket can yield to the event loop between chunks), and the metrics
read :class:`SaCensus`, per-connection counts gathered in bounded slices (:func:`census_steps`) without
building any view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.info import ike_sa_info
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.service.outputs import ChildSaDriver
from ikeguard.service.plan import GatewayPlan


class GatewayView(Protocol):
    """What the answers read of the gateway (``service.gateway.Gateway`` implements it): defined here so this
    module does not import the gateway that uses it."""

    plan: GatewayPlan
    engine: IkeManager
    children: ChildSaDriver


def select_sas(sas: Iterable[IkeSa], *, conn: str | None = None, peer: str | None = None,
               uniqueid: int | None = None) -> list[IkeSa]:
    """IKE SAs matching every given filter; ``uniqueid`` names an IKE SA or one of its Child SAs, ``peer``
    the remote identity (case-insensitive) or remote address. In uniqueid order (a page is a stable slice;
    the workers' proxy merges the workers' first pages)."""
    if conn is None and peer is None and uniqueid is None:
        return sorted(sas, key=_uniqueid)  # linear: the engine keeps them in creation order already
    out = []
    for sa in sas:
        if conn is not None and sa.name != conn:
            continue
        if peer is not None and peer.lower() not in (sa.remote_id.lower(), str(sa.remote.address)):
            continue
        if uniqueid is not None and uniqueid != sa.uniqueid and uniqueid not in sa.children:
            continue
        out.append(sa)
    out.sort(key=_uniqueid)
    return out


def _uniqueid(sa: IkeSa) -> int:
    return sa.uniqueid


def sa_infos(gateway: GatewayView, sas: Iterable[IkeSa]) -> list[dict[str, Any]]:
    """``sas --json`` entries with live counters."""
    result = []
    for sa in sas:
        info = ike_sa_info(sa)
        for entry, child in zip(info["children"], sa.children.values(), strict=True):
            uid = child.uniqueid  # the data plane needs the Child SA: outbound SPIs may repeat across peers
            counters_in = (gateway.children.counters(child.spi_in, inbound=True, child_uniqueid=uid)
                           if child.spi_in else None)
            counters_out = (gateway.children.counters(child.spi_out, inbound=False, child_uniqueid=uid)
                            if child.spi_out and child.outbound_installed else None)
            if counters_in is not None:
                entry["bytes_in"], entry["packets_in"] = counters_in.bytes, counters_in.packets
            if counters_out is not None:
                entry["bytes_out"], entry["packets_out"] = counters_out.bytes, counters_out.packets
            # per-SA drops by reason (docs/dataplane.md): in replay/icv/selector/..., out too_big/...
            entry["drops"] = {"in": dict(counters_in.drops) if counters_in is not None else {},
                              "out": dict(counters_out.drops) if counters_out is not None else {}}
        result.append(info)
    return result


def sa_info_chunks(gateway: GatewayView, sas: Sequence[IkeSa],
                   size: int = 256) -> Iterator[list[dict[str, Any]]]:
    """:func:`sa_infos` of ``sas``, ``size`` SAs at a time: each chunk is built only when the consumer asks
    for it (the control socket writes it and yields to the event loop before the next)."""
    for start in range(0, len(sas), size):
        yield sa_infos(gateway, sas[start:start + size])


_UP = (IkeState.ESTABLISHED, IkeState.REKEYING)


def up_counts(sas: Iterable[IkeSa]) -> dict[str, int]:
    """Established (or rekeying) IKE SAs per connection."""
    up: dict[str, int] = {}
    for sa in sas:
        if sa.state in _UP:
            up[sa.name] = up.get(sa.name, 0) + 1
    return up


@dataclass
class SaCensus:
    """What the metrics show of the live SAs, per connection and state, without a view per SA: IKE and Child
    SA counts, SAs up, the live traffic counters, and the peer certificate that expires first."""

    ike: Counter[tuple[str, str]] = field(default_factory=Counter)  # (connection, state) -> IKE SAs
    child: Counter[tuple[str, str]] = field(default_factory=Counter)  # (connection, state) -> Child SAs
    up: dict[str, int] = field(default_factory=dict)  # connection -> established IKE SAs
    traffic: dict[str, list[int]] = field(default_factory=dict)  # connection -> [b_in, b_out, p_in, p_out]
    peer_certs: dict[str, tuple[float, str]] = field(default_factory=dict)  # conn -> (notAfter, subject)
    counted: int = 0  # IKE SAs counted

    def add(self, gateway: GatewayView, sa: IkeSa) -> None:
        """Count one IKE SA and its Child SAs (skipped when it closed since the walk began)."""
        state = sa.state
        if state is IkeState.CLOSED:
            return
        name = sa.name
        self.counted += 1
        self.ike[(name, state.value)] += 1
        if state in _UP:
            self.up[name] = self.up.get(name, 0) + 1
            not_after, subject = sa.remote_cert_not_after, sa.remote_cert_subject
            if not_after is not None and subject:
                soonest = self.peer_certs.get(name)
                if soonest is None or not_after < soonest[0]:
                    self.peer_certs[name] = (not_after, subject)
        row = self.traffic.get(name or "(none)")
        if row is None:
            row = self.traffic[name or "(none)"] = [0, 0, 0, 0]
        counters = gateway.children.counters
        for child in sa.children.values():
            self.child[(name, child.state.value)] += 1
            uid = child.uniqueid
            if child.spi_in:
                live = counters(child.spi_in, inbound=True, child_uniqueid=uid)
                if live is not None:
                    row[0] += live.bytes
                    row[2] += live.packets
            if child.spi_out and child.outbound_installed:
                live = counters(child.spi_out, inbound=False, child_uniqueid=uid)
                if live is not None:
                    row[1] += live.bytes
                    row[3] += live.packets


def census_steps(gateway: GatewayView, census: SaCensus, step: int = 1000) -> Iterator[int]:
    """Fill ``census`` from the IKE SAs as they are now, ``step`` SAs at a time; yields the number counted
    so far after each slice, so an event loop can run between slices (an SA that closes meanwhile is
    skipped, one set up meanwhile is left for the next census)."""
    sas = gateway.engine.ike_sas()
    for start in range(0, len(sas), step):
        for sa in sas[start:start + step]:
            census.add(gateway, sa)
        yield census.counted


def take_census(gateway: GatewayView) -> SaCensus:
    """:class:`SaCensus` in one go (tests, small gateways)."""
    census = SaCensus()
    for _ in census_steps(gateway, census):
        pass
    return census


def conn_infos(gateway: GatewayView, up: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Every configured connection: identities, addresses, children, peers, SAs up, status. ``up``: the IKE
    SAs up per connection when the caller counted them already (:class:`SaCensus`)."""
    config = gateway.plan.config
    if up is None:
        up = up_counts(gateway.engine.ike_sas())
    result = []
    staples = gateway.engine.ctx.ocsp_staples
    for name, conn in config.model.connections.items():
        inventory = config.inventories.get(name)
        staple = staples.get(name)
        children = [{"name": cname, "local_ts": list(child.local_ts), "remote_ts": list(child.remote_ts),
                     "esp_proposals": list(child.esp_proposals)} for cname, child in conn.children.items()]
        template = inventory is not None or any("%peer" in c.remote_ts for c in conn.children.values())
        disabled = config.disabled_connections.get(name)
        loaded = gateway.plan.connections.get(name)
        status = disabled if disabled else ("up" if up.get(name) else "down")
        result.append({
            "name": name,
            "local_id": loaded.local.identity if loaded is not None else (conn.local.id or ""),
            "remote_id": conn.remote.id,
            "remote_addrs": list(conn.remote_addrs),
            "template": template,
            "peers": len(inventory) if inventory is not None else 0,
            "children": children,
            "ike_sas_up": up.get(name, 0),
            "status": status,
            "ocsp": conn.ocsp,
            "ocsp_staple": ({"status": staple.status, "next_update": staple.next_update}
                            if staple is not None else None),
        })
    return result
