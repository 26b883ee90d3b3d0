"""Responder connection selection by authenticated identity: exact > pattern > ``%any``.

Two connections that can match one identity at the same precedence (and share addresses) are a load
error (docs/reference.md, docs/compliance.md). A template connection with a peer inventory
matches only identities that are enabled inventory peers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikeguard.policy.errors import Finding
from ikeguard.policy.identity import Identity, Precedence, parse_identity

if TYPE_CHECKING:
    from ikeguard.policy.inventory import InventoryPeer, PeerInventory
    from ikeguard.policy.model import ConfigModel, Connection

RULE_AMBIGUOUS = "seg.ambiguous-selection"
_ANY_ADDR = {"%any", "%any4", "%any6"}


def _addr_sets_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    if not a or not b or _ANY_ADDR & set(a) or _ANY_ADDR & set(b):
        return True
    for x in a:
        for y in b:
            try:
                nx, ny = ipaddress.ip_network(x, strict=False), ipaddress.ip_network(y, strict=False)
            except ValueError:
                if x.lower() == y.lower():
                    return True
                continue
            if nx.version == ny.version and nx.overlaps(ny):
                return True
    return False


def ambiguity_findings(model: ConfigModel, file: str | None = None) -> list[Finding]:
    """Pairs of connections that could both be selected for one identity at the same precedence."""
    findings: list[Finding] = []
    items = list(model.connections.items())
    for i, (name_a, a) in enumerate(items):
        id_a = parse_identity(a.remote.id)
        for name_b, b in items[i + 1:]:
            id_b = parse_identity(b.remote.id)
            if id_a.precedence != id_b.precedence or not id_a.overlaps(id_b):
                continue
            if not (_addr_sets_overlap(a.local_addrs, b.local_addrs)
                    and _addr_sets_overlap(a.remote_addrs, b.remote_addrs)):
                continue
            findings.append(Finding(
                RULE_AMBIGUOUS,
                f"connections {name_a!r} ({id_a}) and {name_b!r} ({id_b}) can both match one identity at "
                f"the same precedence ({id_a.precedence.name.lower()}); make one remote id more specific "
                "or separate them by local_addrs/remote_addrs",
                path=f"connections.{name_b}.remote.id", value=repr(b.remote.id), file=file,
                sources=("ikeguard contract: exact > pattern > %any, ambiguity is a load error",)))
    return findings


@dataclass(frozen=True)
class ConnectionMatch:
    """The connection chosen for an identity, with the inventory peer bound to it (if a template)."""

    name: str
    connection: Connection
    precedence: Precedence
    peer: InventoryPeer | None = None


def select_connection(connections: Mapping[str, Connection], identity: Identity, *,
                      inventories: Mapping[str, PeerInventory] | None = None,
                      disabled: Collection[str] = (), local_addr: str | None = None,
                      remote_addr: str | None = None) -> ConnectionMatch | None:
    """Pick the connection for an authenticated identity (exact > pattern > %any), or None.

    Connections in ``disabled`` (quarantined) are skipped; addresses, when given, must be in the
    connection's local_addrs/remote_addrs.
    """
    inventories = inventories or {}
    best: ConnectionMatch | None = None
    for name, conn in connections.items():
        if name in disabled:
            continue
        if local_addr is not None and not _addr_sets_overlap(conn.local_addrs, [local_addr]):
            continue
        if remote_addr is not None and not _addr_sets_overlap(conn.remote_addrs, [remote_addr]):
            continue
        configured = parse_identity(conn.remote.id)
        if not configured.matches(identity):  # the one matching rule (policy.identity)
            continue
        peer = None
        inventory = inventories.get(name)
        if inventory is not None:
            peer = inventory.lookup(identity)
            if peer is None:
                continue
        if best is None or configured.precedence > best.precedence:
            best = ConnectionMatch(name, conn, configured.precedence, peer)
    return best
