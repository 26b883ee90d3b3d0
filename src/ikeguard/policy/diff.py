"""What changed between two loaded configurations, for a reload that keeps unchanged tunnels up.

Connections compare by their settings (a renewed certificate *file* at the same path is not a change,
docs/reference.md ``ikeguard reload``); inventories compare peer by peer. Authorities and secrets that changed
mark the connections that use them as changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeguard.policy.identity import parse_identity
from ikeguard.policy.inventory import identity_key
from ikeguard.policy.loader import LoadedConfig


@dataclass
class ConfigDiff:
    """Connection names added/removed/changed/unchanged, and per-template inventory changes."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    peers_added: dict[str, list[str]] = field(default_factory=dict)
    peers_removed: dict[str, list[str]] = field(default_factory=dict)
    peers_changed: dict[str, list[str]] = field(default_factory=dict)
    gateway_changed: bool = False


def connection_dependencies(config: LoadedConfig, name: str) -> tuple[object, ...]:
    """What a connection depends on outside its own table (authorities, PSKs for its ids)."""
    model = config.model
    conn = model.connections[name]
    authorities = tuple(model.authorities.get(c) for c in conn.remote.cacerts)
    ids = {identity_key(parse_identity(i)) for i in (conn.local.id, conn.remote.id) if i}
    secrets = tuple(sorted(((n, s.model_dump_json()) for n, s in model.secrets.ike.items()
                            if ids & {identity_key(parse_identity(i)) for i in s.ids} or not s.ids)))
    return authorities, secrets


def diff_configs(old: LoadedConfig, new: LoadedConfig) -> ConfigDiff:
    """Compare two configurations (e.g. before and after ``ikeguard reload``)."""
    diff = ConfigDiff()
    old_conns, new_conns = old.model.connections, new.model.connections
    diff.added = [n for n in new_conns if n not in old_conns]
    diff.removed = [n for n in old_conns if n not in new_conns]
    for name in (n for n in new_conns if n in old_conns):
        same = (old_conns[name] == new_conns[name]
                and connection_dependencies(old, name) == connection_dependencies(new, name))
        (diff.unchanged if same else diff.changed).append(name)
    diff.gateway_changed = old.model.gateway != new.model.gateway or old.model.audit != new.model.audit
    for name, inventory in new.inventories.items():
        before = {identity_key(p.identity): p for p in old.inventories[name].peers} \
            if name in old.inventories else {}
        after = {identity_key(p.identity): p for p in inventory.peers}
        diff.peers_added[name] = [p.id for k, p in after.items() if k not in before]
        diff.peers_removed[name] = [p.id for k, p in before.items() if k not in after]
        diff.peers_changed[name] = [p.id for k, p in after.items() if k in before and (
            before[k].selectors != p.selectors or before[k].enabled != p.enabled)]
    return diff
