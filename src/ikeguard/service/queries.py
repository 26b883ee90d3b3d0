"""Answers to ``sas`` and ``conns`` in the shape docs/reference.md fixes ("JSON output"):
SPIs as 8 lowercase hex digits, RFC 3339 UTC times, byte/packet counters from the data plane."""

from __future__ import annotations

from collections.abc import Iterable
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
    the remote identity (case-insensitive) or remote address."""
    out = []
    for sa in sas:
        if conn is not None and sa.name != conn:
            continue
        if peer is not None and peer.lower() not in (sa.remote_id.lower(), str(sa.remote.address)):
            continue
        if uniqueid is not None and uniqueid != sa.uniqueid and uniqueid not in sa.children:
            continue
        out.append(sa)
    return out


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


def conn_infos(gateway: GatewayView) -> list[dict[str, Any]]:
    """Every configured connection: identities, addresses, children, peers, SAs up, status."""
    config = gateway.plan.config
    up: dict[str, int] = {}
    for sa in gateway.engine.ike_sas():
        if sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING):
            up[sa.name] = up.get(sa.name, 0) + 1
    result = []
    for name, conn in config.model.connections.items():
        inventory = config.inventories.get(name)
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
        })
    return result
