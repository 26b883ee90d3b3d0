"""``ikeguard reload`` / SIGHUP: re-read the configuration and change only what changed.

- An invalid new configuration is refused (``config.rejected`` with the findings) and the running one stays.
- A connection whose fingerprint (``GatewayPlan.connection_fingerprint``: its settings and what it depends on,
  not the *contents* of certificate or CRL files) is unchanged keeps its SAs; renewed credentials and CRLs are
  used from the next authentication because the new validator and settings are swapped in.
- Removed connections' SAs are deleted at once; so are the SAs of inventory peers that were removed, disabled
  or re-bound in the peer file (their access changed).
- A connection whose changes can all apply at the next rekey (``NEXT_REKEY_KEYS``: lifetimes, ``rand_time``,
  DPD, MOBIKE/fragmentation/unique, actions, replay window, and proposals that still allow what its running
  SAs negotiated) keeps its SAs untouched: they take the new settings from their next rekey,
  reauthentication or liveness check (``rekeyed_next`` in the result), as ``swanctl --load-conns`` does.
- Every other change (identities, authentication, credentials' paths, CAs, PSKs, addresses, selectors, mode,
  children added or removed, a proposal change that no longer allows a running SA) re-establishes the
  connection (``changed``) at a paced rate (``TERMINATIONS_PER_SECOND`` SAs, ``STARTS_PER_SECOND``
  connections), so a reload never causes a reconnect storm: make-before-break (a reauthentication with the
  new settings, RFC 7296 §2.8.3; the old IKE SA goes once the new one is up) where the addresses are unchanged
  and we can reach the peer, else delete then start. Added connections with ``start_action = "start"`` are
  started the same way. This runs in a background task; the result returned says what it will do
  (``changes``: per connection the keys that changed and which way each connection goes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.policy.diff import diff_configs
from ikeguard.policy.errors import ConfigError
from ikeguard.service.startup import config_sha256, startup_records

log = logging.getLogger("ikeguard.reload")

TERMINATIONS_PER_SECOND = 20.0  # SAs of changed connections deleted (or reauthenticated) per second
# settings that running SAs can take at their next rekey / reauthentication / DPD check (swanctl --load-conns)
NEXT_REKEY_KEYS = frozenset({"rekey_time", "reauth_time", "over_time", "rand_time", "dpd_delay",
                             "dpd_timeout", "mobike", "fragmentation", "unique", "proposals", "ocsp"})
CHILD_NEXT_REKEY_KEYS = frozenset({"rekey_time", "life_time", "rand_time", "rekey_bytes", "life_bytes",
                                   "rekey_packets", "life_packets", "replay_window", "esp_proposals",
                                   "per_resource_sas",
                                   "start_action", "dpd_action", "close_action"})
ADDRESS_KEYS = frozenset({"local_addrs", "remote_addrs"})  # make-before-break cannot reach a new address
STARTS_PER_SECOND = 5.0  # connections (re)started per second after a reload
MAX_FINDINGS_AUDITED = 20  # config.rejected records per refused reload (the first ones; the count is in each)


@dataclass
class ReloadResult:
    """What a reload decided (``ikeguard reload --json``)."""

    kept: list[str] = field(default_factory=list)
    rekeyed_next: list[str] = field(default_factory=list)  # changed, applied at the next rekey; SAs untouched
    changed: list[str] = field(default_factory=list)  # re-established
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    peers_closed: list[str] = field(default_factory=list)  # "connection/peer id" whose SAs were deleted
    terminated: int = 0  # SAs deleted right away (removed connections, changed peers)
    to_restart: int = 0  # SAs of changed connections deleted at the paced rate
    starting: list[str] = field(default_factory=list)  # connections (re)started at the paced rate
    restart_needed: list[str] = field(default_factory=list)  # gateway-wide settings only a restart applies
    refused: str | None = None  # the findings when the new configuration was refused
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"applies", "keys", "why"}

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kept": self.kept, "rekeyed_next": self.rekeyed_next, "changed": self.changed,
            "changes": self.changes, "added": self.added, "removed": self.removed,
            "peers_closed": self.peers_closed, "terminated": self.terminated, "to_restart": self.to_restart,
            "starting": self.starting, "restart_needed": self.restart_needed, "refused": self.refused,
        }


class ReloadRefused(ValueError):
    """The new configuration was refused; the running one stays (message: the findings, one line)."""


# one reload at a time per gateway; the paced re-establishment of the last reload
_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()
_pacers: weakref.WeakKeyDictionary[Any, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def reload_lock(gateway: Any) -> asyncio.Lock:
    """The lock a reload holds; peer inventory changes take it too, so a reload never swaps in inventories
    read from the file just before a `peers` command rewrote it."""
    return _locks.setdefault(gateway, asyncio.Lock())


def _record(gateway: Any, event: AuditEvent) -> None:
    recorder = getattr(gateway, "record", None)
    (recorder if callable(recorder) else gateway.audit.record)(event)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _restart_needed(old: Any, new: Any) -> list[str]:
    """Gateway-wide settings a running gateway cannot change (sockets, data plane, state, audit sinks)."""
    names = ("listen", "dataplane", "state_dir", "audit_sinks", "metrics", "ike_port", "natt_port",
             "retention_days", "online_days")
    return [n for n in names if getattr(old, n, None) != getattr(new, n, None)]


def _start_children(plan: Any, name: str) -> list[str]:
    """Children with ``start_action = "start"`` (or ``"trap"``, which a userspace gateway treats as start)."""
    return [child for (conn, child), actions in plan.child_actions.items()
            if conn == name and actions.start_action in ("start", "trap")]


def _refusal(gateway: Any, path: Path, exc: Exception, admin: str) -> str:
    findings = list(getattr(exc, "findings", ()))
    rules = sorted({f.rule for f in findings})
    for finding in findings[:MAX_FINDINGS_AUDITED]:
        _record(gateway, AuditEvent(
            EventName.CONFIG_REJECTED, Outcome.FAILURE, reason=f"reload refused: {finding}", admin=admin,
            details={"file": str(path), "rule": finding.rule, "findings": len(findings)}))
    if not findings:
        _record(gateway, AuditEvent(EventName.CONFIG_REJECTED, Outcome.FAILURE,
                                    reason=f"reload refused: {exc}", admin=admin,
                                    details={"file": str(path)}))
    head = f"configuration refused ({len(findings)} finding{'s' if len(findings) != 1 else ''}"
    head += f": {', '.join(rules)})" if rules else ")"
    first = f"; first: {findings[0]}" if findings else f": {exc}"
    return " ".join((head + first + "; the running configuration stays").split())


def _enforcement_records(gateway: Any, plan: Any, admin: str) -> None:
    """Quarantine (``config.rejected``) and waivers (``waiver.applied``) of the new plan, the records
    ``ikeguard run`` writes at start, with the operator who reloaded."""
    for record in startup_records(plan):
        if record.event is not EventName.CONFIG_LOADED:
            _record(gateway, replace(record, admin=admin))


def _changed_keys(old: Any, new: Any, name: str) -> list[str]:
    """Dotted keys of connection ``name`` that differ (``children.CHILD.KEY``, ``children.CHILD`` when a
    child was added or removed, ``authorities``/``secrets`` when what it depends on changed)."""
    from ikeguard.policy.diff import connection_dependencies

    a = old.config.model.connections[name].model_dump(mode="json")
    b = new.config.model.connections[name].model_dump(mode="json")
    keys = [k for k in sorted(set(a) | set(b)) if k != "children" and a.get(k) != b.get(k)]
    kids_a, kids_b = a.get("children") or {}, b.get("children") or {}
    for child in sorted(set(kids_a) | set(kids_b)):
        if child not in kids_a or child not in kids_b:
            keys.append(f"children.{child}")
            continue
        ca, cb = kids_a[child], kids_b[child]
        keys += [f"children.{child}.{k}" for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
    deps_a = connection_dependencies(old.config, name)
    deps_b = connection_dependencies(new.config, name)
    keys += [what for what, x, y in zip(("authorities", "secrets"), deps_a, deps_b, strict=True) if x != y]
    return keys


def _at_next_rekey(key: str) -> bool:
    parts = key.split(".")
    if len(parts) == 1:
        return key in NEXT_REKEY_KEYS
    return len(parts) == 3 and parts[0] == "children" and parts[2] in CHILD_NEXT_REKEY_KEYS


def _allows(negotiated: Any, configured: Iterable[Any]) -> bool:
    """``negotiated`` (one transform per type) is still one of the ``configured`` proposals' choices."""
    if negotiated is None:
        return True
    kinds = ("encr", "integ", "prf", "ke", "esn", "addke")
    return any(all(set(getattr(negotiated, k)) <= set(getattr(spec, k)) for k in kinds
                   if getattr(negotiated, k)) for spec in configured)


def _proposals_still_allowed(gateway: Any, new: Any, name: str) -> bool:
    """Every running SA of ``name`` negotiated a suite the new proposals still offer (else re-establish)."""
    conn = new.connections.get(name)
    engine = getattr(gateway, "engine", None)
    if conn is None or engine is None:
        return False  # cannot tell: re-establish rather than keep an SA the new config may not allow
    esp = {c.name: c.esp_proposals for c in conn.children}
    for sa in engine.ike_sas():
        if sa.name != name:
            continue
        if not _allows(sa.proposal, conn.ike_proposals):
            return False
        if any(not _allows(c.proposal, esp.get(c.name, ())) for c in sa.children.values()):
            return False
    return True


def _sa_ids(gateway: Any, *, conn: str, peer: str | None = None) -> list[int]:
    return list(gateway.sa_uniqueids(conn=conn, peer=peer))  # no view built per SA (100,000 SAs: issue 22)


def _terminate(gateway: Any, uniqueids: Iterable[int], reason: str) -> int:
    count = 0
    for uid in uniqueids:
        try:
            count += gateway.terminate(uniqueid=uid, reason=reason)
        except Exception as exc:  # gone meanwhile (peer deleted it): nothing to do
            log.debug("reload: terminate %d skipped: %s", uid, exc)
    return count


def _start(gateway: Any, plan: Any, name: str) -> None:
    children = _start_children(plan, name)
    actions = getattr(gateway, "actions", None)
    if actions is not None and not actions.starts_connections:
        return  # another worker starts it (issue 22)
    try:
        if actions is not None:  # the gateway's start_action machinery: retries with backoff until up
            actions.bring_up(name, children, None, "reload")
        else:
            gateway.start_ike(name, children)
    except Exception as exc:
        log.warning("reload: starting %s failed: %s", name, exc)


async def _reestablish(gateway: Any, plan: Any, changed: dict[str, list[int]], starts: list[str],
                       make_before_break: set[str] | None = None) -> None:
    """Re-establish the changed connections' SAs (make-before-break for those in ``make_before_break``: a
    reauthentication with the new settings; else delete) and start connections, each at its paced rate."""
    reauth = getattr(gateway, "reauthenticate", None)
    for name, uids in changed.items():
        replaced = False
        for uid in uids:
            if name in (make_before_break or ()) and callable(reauth) and reauth(uid):
                replaced = True  # the new IKE SA brings the children up; the old one goes when it is up
            else:
                _terminate(gateway, [uid], f"connection {name} changed by reload")
            await asyncio.sleep(1.0 / TERMINATIONS_PER_SECOND)
        if replaced and name in starts:
            starts.remove(name)
        if name in starts:
            starts.remove(name)
            _start(gateway, plan, name)
            await asyncio.sleep(1.0 / STARTS_PER_SECOND)
    for name in starts:
        _start(gateway, plan, name)
        await asyncio.sleep(1.0 / STARTS_PER_SECOND)
    log.info("reload: re-establishment finished")


async def reload_gateway(gateway: Any, path: str | Path | None = None, *, admin: str = "",
                         profile_override: str | None = None, wait: bool = False) -> ReloadResult:
    """Reload ``path`` (default: the running config) into ``gateway``; never raises for a bad config
    (``result.refused`` says why). ``wait`` returns only after the paced re-establishment ran."""
    from ikeguard.service.plan import build_plan

    async with reload_lock(gateway):
        old = gateway.plan
        config_path = Path(path) if path is not None else Path(old.config.path)
        try:
            new = await asyncio.to_thread(build_plan, config_path, now=_now(),
                                          profile_override=profile_override)
        except (ConfigError, OSError, ValueError) as exc:
            result = ReloadResult(refused=_refusal(gateway, config_path, exc, admin))
            log.warning("reload of %s refused: %s", config_path, result.refused)
            return result

        result = ReloadResult(restart_needed=_restart_needed(old, new))
        old_names, new_names = set(old.connections), set(new.connections)
        make_before_break: set[str] = set()
        for name in new.connections:
            if name not in old_names:
                result.added.append(name)
            elif old.connection_fingerprint(name) == new.connection_fingerprint(name):
                result.kept.append(name)
            else:
                keys = _changed_keys(old, new, name)
                lazy = bool(keys) and all(_at_next_rekey(k) for k in keys)
                allowed = (not any(k.split(".")[-1] in ("proposals", "esp_proposals") for k in keys)
                           or _proposals_still_allowed(gateway, new, name))
                if lazy and allowed:
                    result.rekeyed_next.append(name)
                    result.changes[name] = {"applies": "next rekey", "keys": keys,
                                            "why": "running SAs keep their keys and take these at their "
                                                   "next rekey, reauthentication or DPD check"}
                    continue
                result.changed.append(name)
                slow = [k for k in keys if not _at_next_rekey(k)]
                mbb = not any(k.split(".")[0] in ADDRESS_KEYS for k in keys)
                if mbb:
                    make_before_break.add(name)
                why = (f"{', '.join(slow)} changed" if slow
                       else "the new proposals no longer allow what a running SA negotiated" if not allowed
                       else "its settings changed")
                result.changes[name] = {"applies": "re-establish", "keys": keys,
                                        "how": "make-before-break" if mbb else "delete, then start",
                                        "why": why}
        result.removed = [n for n in old.connections if n not in new_names]

        # collect before the swap: which SAs belong to what
        changed_sas = {name: _sa_ids(gateway, conn=name) for name in result.changed}
        removed_sas = [uid for name in result.removed for uid in _sa_ids(gateway, conn=name)]
        diff = diff_configs(old.config, new.config)
        peer_sas: list[int] = []
        for name in result.kept:
            for peer in (*diff.peers_removed.get(name, []), *diff.peers_changed.get(name, [])):
                uids = _sa_ids(gateway, conn=name, peer=peer)
                if uids:
                    result.peers_closed.append(f"{name}/{peer}")
                    peer_sas.extend(uids)

        gateway.apply_plan(new)  # new authentications use the new settings, validator and inventories
        adopt = getattr(gateway, "adopt_settings", None)
        for name in result.rekeyed_next:
            if callable(adopt):
                adopt(name)  # running SAs: new lifetimes, DPD, proposals from their next rekey
        result.terminated = _terminate(gateway, removed_sas, "connection removed by reload")
        result.terminated += _terminate(gateway, peer_sas, "peer changed in the inventory by reload")
        result.to_restart = sum(len(v) for v in changed_sas.values())
        result.starting = [n for n in (*result.changed, *result.added) if _start_children(new, n)]

        _enforcement_records(gateway, new, admin)
        details: dict[str, str | int | bool] = {
            "file": str(config_path), "kept": len(result.kept), "changed": len(result.changed),
            "rekeyed_next": len(result.rekeyed_next),
            "added": len(result.added), "removed": len(result.removed),
            "restart_needed": ",".join(result.restart_needed)}
        in_file = getattr(new.config, "file_profile", None)
        if in_file is not None and in_file != new.profile.name:  # `run --profile X --override-profile`
            details.update(profile=new.profile.name, profile_in_file=in_file, profile_override=True)
        if digest := config_sha256(new.config):
            details["config_sha256"] = digest
        _record(gateway, AuditEvent(EventName.CONFIG_LOADED, reason="configuration reloaded", admin=admin,
                                    details=details))
        log.info("reload of %s: kept %s, at next rekey %s, re-established %s, added %s, removed %s",
                 config_path, result.kept, result.rekeyed_next, result.changed, result.added, result.removed)

        previous = _pacers.pop(gateway, None)
        if previous is not None and not previous.done():
            previous.cancel()  # superseded: the new plan decides what to (re)start
        if changed_sas or result.starting:
            task = asyncio.ensure_future(_reestablish(gateway, new, changed_sas, list(result.starting),
                                                      make_before_break))
            _pacers[gateway] = task
            if wait:
                await task
        return result
