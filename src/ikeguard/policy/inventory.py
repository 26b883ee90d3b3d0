"""Peer inventory of a template connection: exact identities bound to their own traffic selectors.

``%peer`` in a child's ``remote_ts`` means the selectors bound here to the authenticated identity.
Subnets of different peers never overlap (a merchant cannot claim another's subnet). Peers can be added,
disabled and enabled at run time without a reload; :meth:`PeerInventory.save` writes the file back
(atomically) when the caller wants the change to persist.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ikeguard.policy.errors import ConfigError, Finding
from ikeguard.policy.identity import Identity, IdentityKind, parse_identity
from ikeguard.policy.ts import TrafficSelector, TsKind, overlapping_pairs, parse_ts

IdentityKey = tuple[IdentityKind, tuple[str, ...]]

RULE_OVERLAP = "seg.inventory-overlap"
RULE_PEER_ID = "seg.inventory-identity"


def identity_key(identity: Identity) -> IdentityKey:
    """Normalized key: ``@gw.example`` and ``gw.example`` are the same identity."""
    return (identity.kind, identity.parts)


@dataclass(frozen=True)
class InventoryPeer:
    """One inventory entry; ``disabled_reason`` says why a peer is off (admin, quarantine)."""

    identity: Identity
    remote_ts: tuple[str, ...]
    selectors: tuple[TrafficSelector, ...]
    enabled: bool = True
    ticket: str | None = None
    disabled_reason: str | None = None

    @property
    def id(self) -> str:
        """The identity as written."""
        return self.identity.text


def _selectors(remote_ts: Sequence[str]) -> tuple[TrafficSelector, ...]:
    out = []
    for text in remote_ts:
        spec = parse_ts(text)
        if spec.kind is not TsKind.FIXED or spec.selector is None:
            raise ValueError(f"an inventory peer needs fixed subnets, not {text!r}")
        out.append(spec.selector)
    return tuple(out)


class PeerInventory:
    """The peers of one template connection, indexed by normalized identity."""

    def __init__(self, connection: str, template: Identity, path: Path | None = None) -> None:
        self.connection = connection
        self.template = template
        self.path = path
        self._peers: dict[IdentityKey, InventoryPeer] = {}
        self.conflicts: list[tuple[str, str]] = []

    # -- building -------------------------------------------------------------------------------
    def _check_identity(self, identity: Identity) -> str | None:
        if identity.is_pattern or identity.kind is IdentityKind.ANY:
            return f"inventory peer ids must be exact identities, not the pattern {identity.text!r}"
        if self.template.is_pattern or self.template.kind is IdentityKind.ANY:
            if not self.template.matches(identity):
                return (f"{identity.text!r} is not matched by connection {self.connection!r} "
                        f"remote id {self.template.text!r}")
        elif identity_key(self.template) != identity_key(identity):
            return f"{identity.text!r} differs from connection {self.connection!r} remote id"
        return None

    @classmethod
    def from_entries(cls, connection: str, template: Identity, entries: Iterable[InventoryPeer],
                     path: Path | None = None) -> tuple[PeerInventory, list[Finding]]:
        """Bulk load (file order). Identity problems become findings; overlaps are recorded in
        ``conflicts`` (earlier peer, later peer) for the rules to judge (refuse or quarantine)."""
        inv = cls(connection, template, path)
        findings: list[Finding] = []
        file = str(path) if path else None
        for index, peer in enumerate(entries):
            problem = inv._check_identity(peer.identity)
            key = identity_key(peer.identity)
            if problem is None and key in inv._peers:
                problem = f"duplicate inventory peer {peer.id!r}"
            if problem:
                findings.append(Finding(RULE_PEER_ID, problem, path=f"peer[{index}].id", value=peer.id,
                                        file=file))
                continue
            inv._peers[key] = peer
        inv.conflicts = file_order_conflicts(inv.peers)
        return inv, findings

    # -- queries -----------------------------------------------------------------------------------
    @property
    def peers(self) -> tuple[InventoryPeer, ...]:
        """All peers, enabled or not, in insertion order."""
        return tuple(self._peers.values())

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, identity: Identity | str) -> InventoryPeer | None:
        """The entry for an identity (enabled or not)."""
        ident = parse_identity(identity) if isinstance(identity, str) else identity
        return self._peers.get(identity_key(ident))

    def lookup(self, identity: Identity) -> InventoryPeer | None:
        """The enabled entry for an authenticated identity, else None."""
        peer = self._peers.get(identity_key(identity))
        return peer if peer is not None and peer.enabled else None

    def bound_selectors(self, identity: Identity) -> tuple[TrafficSelector, ...] | None:
        """What ``%peer`` means for this authenticated identity (None: not an enabled peer)."""
        peer = self.lookup(identity)
        return peer.selectors if peer is not None else None

    def _overlaps(self, selectors: Sequence[TrafficSelector], skip: IdentityKey | None) -> str | None:
        for key, other in self._peers.items():
            if key == skip:
                continue
            for mine in selectors:
                for theirs in other.selectors:
                    if mine.intersect(theirs) is not None:
                        return f"{mine} overlaps {theirs} of peer {other.id!r}"
        return None

    # -- changes without reload ---------------------------------------------------------------------
    def add(self, identity: str, remote_ts: Sequence[str], *, ticket: str | None = None,
            enabled: bool = True) -> InventoryPeer:
        """Add a peer; ``ConfigError`` when the id is not exact/matching, duplicate, or subnets overlap."""
        try:
            ident = parse_identity(identity)
            selectors = _selectors(remote_ts)
        except ValueError as exc:
            raise ConfigError([Finding(RULE_PEER_ID, str(exc), path="peer", value=identity)]) from None
        if not selectors:
            raise ConfigError([Finding(RULE_PEER_ID, "remote_ts must name at least one subnet",
                                       path="peer.remote_ts", value=identity)])
        problem = self._check_identity(ident)
        if problem is None and identity_key(ident) in self._peers:
            problem = f"duplicate inventory peer {identity!r}"
        if problem:
            raise ConfigError([Finding(RULE_PEER_ID, problem, path="peer.id", value=identity)])
        overlap = self._overlaps(selectors, None)
        if overlap:
            raise ConfigError([Finding(RULE_OVERLAP, f"peer {identity!r}: {overlap}", path="peer.remote_ts",
                                       value=", ".join(remote_ts), sources=("ikeguard contract: inventory "
                                                                             "subnets must not overlap",))])
        peer = InventoryPeer(ident, tuple(remote_ts), selectors, enabled, ticket,
                             None if enabled else "added disabled")
        self._peers[identity_key(ident)] = peer
        return peer

    def _require(self, identity: str) -> tuple[IdentityKey, InventoryPeer]:
        key = identity_key(parse_identity(identity))
        peer = self._peers.get(key)
        if peer is None:
            raise KeyError(f"no inventory peer {identity!r} in connection {self.connection!r}")
        return key, peer

    def disable(self, identity: str, reason: str = "disabled by admin") -> InventoryPeer:
        """Disable a peer (its subnets stay reserved). The caller tears down its SAs."""
        key, peer = self._require(identity)
        peer = replace(peer, enabled=False, disabled_reason=reason)
        self._peers[key] = peer
        return peer

    def enable(self, identity: str) -> InventoryPeer:
        """Enable a peer; refused (``ConfigError``) while its subnets overlap another peer's."""
        key, peer = self._require(identity)
        overlap = self._overlaps(peer.selectors, key)
        if overlap:
            raise ConfigError([Finding(RULE_OVERLAP, f"peer {identity!r} stays disabled: {overlap}",
                                       path="peer.remote_ts", value=", ".join(peer.remote_ts))])
        peer = replace(peer, enabled=True, disabled_reason=None)
        self._peers[key] = peer
        return peer

    # -- persistence ---------------------------------------------------------------------------------
    def to_toml(self) -> str:
        """The inventory as a ``[[peer]]`` TOML file (quarantine is not persisted; admin disables are)."""
        lines = [f"# Peer inventory of connection {self.connection!r} (written by ikeguard)", ""]
        for p in self._peers.values():
            enabled = p.enabled or (p.disabled_reason or "").startswith("quarantined")
            lines.append("[[peer]]")
            lines.append(f"id = {_toml_str(p.id)}")
            lines.append("remote_ts = [" + ", ".join(_toml_str(t) for t in p.remote_ts) + "]")
            lines.append(f"enabled = {'true' if enabled else 'false'}")
            if p.ticket is not None:
                lines.append(f"ticket = {_toml_str(p.ticket)}")
            lines.append("")
        return "\n".join(lines)

    def save(self, path: Path | None = None) -> Path:
        """Write the inventory atomically (temp file + rename) to ``path`` or the file it came from."""
        target = path or self.path
        if target is None:
            raise ValueError("no path to save the inventory to")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_toml())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def file_order_conflicts(peers: Sequence[InventoryPeer]) -> list[tuple[str, str]]:
    """(kept peer, offending peer) pairs, judged in file order: an entry is an offender when its subnets
    overlap an *earlier* entry that is not itself an offender; every other entry is kept. So one late entry
    claiming a /16 is the only offender however many /24s it covers (address order would have blamed each
    of those /24s), and entries overlapping only an offender stay. The overlapping pairs come from one sweep
    over the sorted ranges (O(n log n) when the subnets are disjoint)."""
    position = {p.id: i for i, p in enumerate(peers)}
    earlier: dict[str, set[str]] = {}
    for a, b in overlapping_pairs([(p.id, s) for p in peers for s in p.selectors]):
        first, second = sorted((a, b), key=position.__getitem__)
        earlier.setdefault(second, set()).add(first)
    offenders: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for peer in peers:
        kept = sorted((e for e in earlier.get(peer.id, ()) if e not in offenders), key=position.__getitem__)
        if kept:
            offenders.add(peer.id)
            pairs.extend((e, peer.id) for e in kept)
    return pairs


def _toml_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
