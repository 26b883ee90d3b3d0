"""Peer inventory of a running gateway changed without a reload: list, add, disable, enable.

The change is made on the live inventory the engine resolves ``%peer`` through (``plan.selectors`` reads
``plan.config.inventories``), so a disabled peer is refused at its next IKE_AUTH; it is written back to the
inventory file (so a reload or restart keeps it) and audited as ``peer.added`` / ``peer.disabled`` /
``peer.enabled`` with the operator and the change ticket (PCI DSS 10.2.1.2, 10.2.2). ``disable`` also
deletes the peer's SAs; other peers are not touched.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ikeguard.audit.events import AuditEvent, DetailValue, EventName
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.identity import parse_identity
from ikeguard.policy.inventory import IdentityKey, InventoryPeer, PeerInventory, identity_key


class PeerCommandError(ValueError):
    """A peer command the gateway refuses; the message is shown to the operator."""


def _inventories(gateway: Any) -> dict[str, PeerInventory]:
    inventories: dict[str, PeerInventory] = gateway.plan.config.inventories
    return inventories


def _key(text: str) -> IdentityKey | None:
    try:
        return identity_key(parse_identity(text))
    except ValueError:
        return None


def _identity(peer_id: str) -> IdentityKey:
    key = _key(peer_id)
    if key is None:
        raise PeerCommandError(f"{peer_id!r} is not an identity (FQDN, user@domain, IP address, DN or "
                               "@#keyid)")
    return key


def _choose(gateway: Any, conn: str | None, peer_id: str | None, *, adding: bool = False) -> PeerInventory:
    """The inventory a command acts on: ``conn`` if given, else the only one that fits ``peer_id``."""
    inventories = _inventories(gateway)
    if not inventories:
        raise PeerCommandError("no connection of this gateway has a peer inventory (remote.peers)")
    if conn is not None:
        inventory = inventories.get(conn)
        if inventory is None:
            names = ", ".join(sorted(inventories))
            raise PeerCommandError(f"connection {conn!r} has no peer inventory (connections with one: "
                                   f"{names})")
        return inventory
    if peer_id is None:
        if len(inventories) == 1:
            return next(iter(inventories.values()))
        raise PeerCommandError("several connections have a peer inventory: give --conn")
    ident = parse_identity(peer_id)
    if adding:
        fits = [inv for inv in inventories.values() if inv.template.matches(ident)
                or identity_key(inv.template) == identity_key(ident)]
    else:
        fits = [inv for inv in inventories.values() if inv.get(ident) is not None]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        what = "whose remote id matches" if adding else "that lists"
        raise PeerCommandError(f"no connection {what} {peer_id!r}")
    raise PeerCommandError(f"{peer_id!r} fits several connections ({', '.join(i.connection for i in fits)}): "
                           "give --conn")


def _up_counts(gateway: Any, connection: str) -> Counter[IdentityKey | None]:
    counts: Counter[IdentityKey | None] = Counter()
    for sa in gateway.sas(conn=connection):
        counts[_key(str(sa.get("remote_id", "")))] += 1
    return counts


def peer_dict(inventory: PeerInventory, peer: InventoryPeer, ike_sas: int) -> dict[str, Any]:
    """One inventory entry as shown by ``peers list --json``."""
    return {
        "connection": inventory.connection,
        "id": peer.id,
        "remote_ts": list(peer.remote_ts),
        "enabled": peer.enabled,
        "ticket": peer.ticket,
        "disabled_reason": peer.disabled_reason,
        "ike_sas": ike_sas,
    }


def list_peers(gateway: Any, *, conn: str | None = None) -> list[dict[str, Any]]:
    """Every inventory peer (of ``conn``, or of all template connections) with its IKE SA count."""
    inventories = _inventories(gateway)
    if conn is not None and conn not in inventories:
        _choose(gateway, conn, None)  # raises the helpful error
    out: list[dict[str, Any]] = []
    for name, inventory in inventories.items():
        if conn is not None and name != conn:
            continue
        counts = _up_counts(gateway, name)
        out.extend(peer_dict(inventory, p, counts[identity_key(p.identity)]) for p in inventory.peers)
    return out


def _check_writable(inventory: PeerInventory) -> None:
    path = inventory.path
    if path is None:
        raise PeerCommandError(f"connection {inventory.connection!r}: inventory has no file to persist to")
    if not os.access(path.parent, os.W_OK):
        raise PeerCommandError(f"cannot write {path}: the change would not survive a restart; refused")


def _persist(inventory: PeerInventory) -> None:
    try:
        inventory.save()
    except OSError as exc:
        raise PeerCommandError(f"the change is active but could not be written to {inventory.path}: "
                               f"{exc.strerror or exc}; it will be lost on reload") from None


def _record(gateway: Any, name: EventName, inventory: PeerInventory, peer: InventoryPeer, admin: str,
            ticket: str | None, reason: str, **details: DetailValue) -> None:
    extra: dict[str, DetailValue] = {"remote_ts": ",".join(peer.remote_ts), **details}
    if ticket:
        extra["ticket"] = ticket
    event = AuditEvent(name, reason=reason, connection=inventory.connection, remote_id=peer.id, admin=admin,
                       details=extra)
    recorder = getattr(gateway, "record", None)  # the gateway's record() also feeds the event stream
    (recorder if callable(recorder) else gateway.audit.record)(event)


def _config_error(exc: ConfigError) -> PeerCommandError:
    return PeerCommandError("; ".join(f.message for f in exc.findings) or str(exc))


def add_peer(gateway: Any, peer_id: str, remote_ts: Sequence[str], *, conn: str | None = None,
             ticket: str | None = None, admin: str = "") -> dict[str, Any]:
    """Add an enabled peer bound to ``remote_ts`` (exact identity, subnets not overlapping others')."""
    _identity(peer_id)
    if not remote_ts:
        raise PeerCommandError("give the peer's subnets (--ts CIDR, one or more)")
    inventory = _choose(gateway, conn, peer_id, adding=True)
    _check_writable(inventory)
    try:
        peer = inventory.add(peer_id, list(remote_ts), ticket=ticket)
    except ConfigError as exc:
        raise _config_error(exc) from None
    _persist(inventory)
    _record(gateway, EventName.PEER_ADDED, inventory, peer, admin, ticket,
            f"peer added by {admin or 'admin'}")
    return peer_dict(inventory, peer, 0)


def _existing(inventory: PeerInventory, peer_id: str) -> InventoryPeer:
    peer = inventory.get(parse_identity(peer_id))
    if peer is None:
        raise PeerCommandError(f"no peer {peer_id!r} in the inventory of connection {inventory.connection!r}")
    return peer


def disable_peer(gateway: Any, peer_id: str, *, conn: str | None = None, ticket: str | None = None,
                 admin: str = "", terminated_elsewhere: int = 0) -> dict[str, Any]:
    """Disable a peer: its next IKE_AUTH is refused and its SAs (in this connection only) are deleted.
    ``terminated_elsewhere``: the peer's IKE SAs other worker processes deleted (issue 22), counted in the
    one ``peer.disabled`` record."""
    _identity(peer_id)
    inventory = _choose(gateway, conn, peer_id)
    _existing(inventory, peer_id)
    _check_writable(inventory)
    reason = f"disabled by {admin or 'admin'}" + (f" ({ticket})" if ticket else "")
    peer = inventory.disable(peer_id, reason)
    _persist(inventory)
    terminated = terminated_elsewhere
    if gateway.sas(conn=inventory.connection, peer=peer.id):
        terminated += gateway.terminate(peer=peer.id, conn=inventory.connection, reason=f"peer {reason}")
    _record(gateway, EventName.PEER_DISABLED, inventory, peer, admin, ticket, f"peer {reason}",
            terminated=terminated)
    result = peer_dict(inventory, peer, 0)
    result["terminated"] = terminated
    return result


def enable_peer(gateway: Any, peer_id: str, *, conn: str | None = None, ticket: str | None = None,
                admin: str = "") -> dict[str, Any]:
    """Enable a peer again (refused while quarantined by the profile or while its subnets overlap)."""
    _identity(peer_id)
    inventory = _choose(gateway, conn, peer_id)
    before = _existing(inventory, peer_id)
    if (before.disabled_reason or "").startswith("quarantined"):
        raise PeerCommandError(f"peer {peer_id!r} is {before.disabled_reason} by the compliance profile: "
                               "fix the configuration and reload")
    _check_writable(inventory)
    try:
        peer = inventory.enable(peer_id)
    except ConfigError as exc:
        raise _config_error(exc) from None
    _persist(inventory)
    _record(gateway, EventName.PEER_ENABLED, inventory, peer, admin, ticket,
            f"peer enabled by {admin or 'admin'}")
    counts = _up_counts(gateway, inventory.connection)
    return peer_dict(inventory, peer, counts[identity_key(peer.identity)])
