"""Checks on plain settings: segmentation, lifetimes, jitter, DPD, revocation, reauth, audit, mode."""

from __future__ import annotations

from ikeguard.policy.checks.base import CheckContext, Outcome, conn_target, register
from ikeguard.policy.identity import Precedence, parse_identity
from ikeguard.policy.profile import Rule
from ikeguard.policy.ts import TsKind, parse_ts
from ikeguard.policy.values import format_duration, parse_duration


@register("by_construction")
def check_by_construction(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Holds because the product cannot do otherwise (e.g. no IKEv1 code exists)."""
    return [Outcome("", True, message=str(rule.params.get("how", "by construction")))]


@register("wildcard_fixed_ts")
def check_wildcard_fixed_ts(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """A pattern/%any remote id with a fixed remote subnet would let any matching peer claim it."""
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        remote = parse_identity(conn.remote.id)
        if remote.precedence is Precedence.EXACT:
            continue
        bad = False
        for cname, child in conn.children.items():
            for i, text in enumerate(child.remote_ts):
                if parse_ts(text).kind is TsKind.FIXED:
                    bad = True
                    out.append(Outcome(
                        f"connections.{name}.children.{cname}.remote_ts[{i}]", False, text,
                        f"remote id {conn.remote.id!r} matches many peers, so a fixed remote subnet "
                        "would let any of them claim it", file=ctx.file, target=conn_target(name)))
        if not bad:
            out.append(Outcome(f"connections.{name}.children", True, conn.remote.id))
    return out


@register("inventory_overlap")
def check_inventory_overlap(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Two inventory peers must not share address space (the later one is the offender)."""
    out: list[Outcome] = []
    for name, inventory in ctx.config.inventories.items():
        file = str(inventory.path) if inventory.path else ctx.file
        index = {p.id: i for i, p in enumerate(inventory.peers)}
        for earlier, later in inventory.conflicts:
            peer = inventory.get(later)
            other = inventory.get(earlier)
            value = ", ".join(peer.remote_ts) if peer else None
            theirs = ", ".join(other.remote_ts) if other else "?"
            out.append(Outcome(f"peer[{index.get(later, '?')}].remote_ts", False, value,
                               f"peer {later!r} overlaps peer {earlier!r} ({theirs}) in connection {name!r}",
                               file=file, target=("peer", name, later)))
        if not inventory.conflicts:
            out.append(Outcome(f"connections.{name}.remote.peers", True, f"{len(inventory)} peers"))
    return out


def _ike_lifetime(rekey: int, reauth: int) -> int:
    """The IKE SA key lifetime judged: rekey_time, or reauth_time when rekeying is off."""
    return rekey or reauth


@register("lifetime_max")
def check_lifetime_max(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """IKE SA (rekey_time, else reauth_time) / Child SA (hard life_time) at most the rule's maximum."""
    limit = parse_duration(rule.params["max"])
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        if rule.params["scope"] == "ike":
            life = _ike_lifetime(conn.rekey_time, conn.reauth_time)
            scope = f"connections.{name}.rekey_time"
            if life == 0 or life > limit:
                shown = format_duration(life) if life else "0 (never rekeyed)"
                out.append(Outcome(scope, False, shown, f"IKE SA lifetime {shown} exceeds "
                                   f"{format_duration(limit)}", file=ctx.file, target=conn_target(name)))
            else:
                out.append(Outcome(scope, True, format_duration(life)))
            continue
        for cname, child in conn.children.items():
            life = child.effective_life_time
            key = "life_time" if child.life_time is not None else "rekey_time"
            scope = f"connections.{name}.children.{cname}.{key}"
            if life == 0 or life > limit:
                shown = format_duration(life) if life else "0 (never rekeyed)"
                out.append(Outcome(scope, False, shown, f"Child SA lifetime {shown} exceeds "
                                   f"{format_duration(limit)}", file=ctx.file, target=conn_target(name)))
            else:
                out.append(Outcome(scope, True, format_duration(life)))
    return out


@register("lifetime_range")
def check_lifetime_range(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """rekey_time inside the recommended range (a warning rule); for an IKE SA that reauthenticates instead
    of rekeying (rekey_time 0, ipsec.conf's ``reauth=yes`` default) its reauth_time, as ``lifetime_max``."""
    low, high = parse_duration(rule.params["min"]), parse_duration(rule.params["max"])
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        ike_key = "rekey_time" if conn.rekey_time or not conn.reauth_time else "reauth_time"
        pairs = ([(f"connections.{name}.{ike_key}", _ike_lifetime(conn.rekey_time, conn.reauth_time))]
                 if rule.params["scope"] == "ike" else
                 [(f"connections.{name}.children.{c}.rekey_time", ch.rekey_time)
                  for c, ch in conn.children.items()])
        for scope, value in pairs:
            ok = low <= value <= high
            out.append(Outcome(scope, ok, format_duration(value),
                               "" if ok else f"outside the recommended {format_duration(low)}.."
                               f"{format_duration(high)}", file=ctx.file))
    return out


@register("rand_time")
def check_rand_time(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """rand_time set explicitly on every connection and child (jittered rekeying, RFC 7296 §2.8)."""
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        scopes = [(f"connections.{name}.rand_time", conn.rand_time)]
        scopes += [(f"connections.{name}.children.{c}.rand_time", ch.rand_time)
                   for c, ch in conn.children.items()]
        for scope, value in scopes:
            if not value:
                out.append(Outcome(scope, False, None if value is None else "0s", "rand_time is not set",
                                   file=ctx.file, target=conn_target(name)))
            else:
                out.append(Outcome(scope, True, format_duration(value)))
    return out


@register("dpd")
def check_dpd(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """dpd_delay > 0 on every connection."""
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        scope = f"connections.{name}.dpd_delay"
        if conn.dpd_delay:
            out.append(Outcome(scope, True, format_duration(conn.dpd_delay)))
        else:
            out.append(Outcome(scope, False, None, "dead peer detection is off (dpd_delay not set)",
                               file=ctx.file, target=conn_target(name)))
    return out


@register("revocation_config")
def check_revocation_config(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Certificate-authenticated peers: revocation mode allowed and a revocation source configured."""
    modes = list(rule.params.get("modes", ["strict"]))
    model = ctx.config.model
    out: list[Outcome] = []
    for name, conn in model.connections.items():
        if conn.local.pubkeys:
            out.append(Outcome(f"connections.{name}.local.pubkeys", False, ", ".join(conn.local.pubkeys),
                               "we authenticate with a raw public key (RFC 7670): no certificate, so nothing "
                               "can revoke it and it never expires; this profile wants certificates with "
                               "revocation checking", file=ctx.file, target=conn_target(name)))
        if conn.remote.auth != "pubkey":
            continue
        if conn.remote.pubkeys:
            out.append(Outcome(f"connections.{name}.remote.pubkeys", False, ", ".join(conn.remote.pubkeys),
                               "peers authenticate with pinned raw public keys (RFC 7670): no certificate, "
                               "so no revocation and no expiry; this profile wants certificate-authenticated "
                               "peers with revocation checking", file=ctx.file, target=conn_target(name)))
            continue
        scope = f"connections.{name}.remote.revocation"
        if conn.remote.revocation not in modes:
            out.append(Outcome(scope, False, conn.remote.revocation, f"expected {' or '.join(modes)}",
                               file=ctx.file, target=conn_target(name)))
            continue
        authorities = [model.authorities[c] for c in conn.remote.cacerts if c in model.authorities]
        stapled = conn.ocsp in ("request", "both")  # RFC 4806: the peer's stapled OCSP response (docs/pki.md)
        if not stapled and (not authorities or not any(a.crls or a.crl_uris or a.ocsp_uris
                                                       for a in authorities)):
            out.append(Outcome(f"connections.{name}.remote.cacerts", False, ", ".join(conn.remote.cacerts),
                               "no authority with crls, crl_uris or ocsp_uris, and no ocsp = \"request\"",
                               file=ctx.file, target=conn_target(name)))
            continue
        source = f" (ocsp = {conn.ocsp})" if stapled else ""
        out.append(Outcome(scope, True, conn.remote.revocation + source))
    return out


@register("reauth")
def check_reauth(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """reauth_time set and not longer than the rule's maximum."""
    limit = parse_duration(rule.params.get("max", "24h"))
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        scope = f"connections.{name}.reauth_time"
        value = conn.reauth_time
        if not value or value > limit:
            shown = format_duration(value) if value else None
            out.append(Outcome(scope, False, shown, f"expected reauthentication at most every "
                               f"{format_duration(limit)}", file=ctx.file, target=conn_target(name)))
        else:
            out.append(Outcome(scope, True, format_duration(value)))
    return out


@register("audit_retention")
def check_audit_retention(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Retention and online days at least the rule's minimum (PCI DSS 10.5.1)."""
    audit = ctx.config.model.audit
    out = []
    for key, have in (("retention_days", audit.retention_days), ("online_days", audit.online_days)):
        need = int(rule.params[key])
        ok = have >= need
        out.append(Outcome(f"audit.{key}", ok, str(have), "" if ok else f"expected at least {need} days",
                           file=ctx.file))
    return out


@register("siem_sink")
def check_siem_sink(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """At least one RFC 5425 syslog-over-TLS sink configured."""
    sinks = [s for s in ctx.config.model.audit.sinks if s.type == "syslog-tls"]
    if sinks:
        return [Outcome("audit.sinks", True, ", ".join(str(s.address) for s in sinks))]
    return [Outcome("audit.sinks", False, None, 'no sink of type "syslog-tls"', file=ctx.file)]


@register("tunnel_mode")
def check_tunnel_mode(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Children use tunnel mode."""
    out = []
    for name, conn in ctx.config.model.connections.items():
        for cname, child in conn.children.items():
            ok = child.mode == "tunnel"
            out.append(Outcome(f"connections.{name}.children.{cname}.mode", ok, child.mode,
                               "" if ok else "transport mode", file=ctx.file, target=conn_target(name)))
    return out


@register("auth_signature")
def check_auth_signature(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Certificate-authenticated peers: ``ikeguard run`` refuses (AUTHENTICATION_FAILED, ``auth.failure`` with
    the reason) an AUTH whose signature scheme is not in ``params.schemes``, whatever AUTH method carries
    it, and announces only the hashes of those schemes in SIGNATURE_HASH_ALGORITHMS, refusing a method 14
    signature with any other hash (RFC 7427 §4). A scheme name the engine does not know fails the rule."""
    from ikeguard.crypto.signatures import scheme_by_name  # names as strongSwan writes them

    names = [str(n) for n in rule.params.get("schemes", [])]
    try:
        schemes = [scheme_by_name(n) for n in names]
    except ValueError as exc:
        return [Outcome(f"profile {ctx.profile.name} rule {rule.id}", False, ", ".join(names), str(exc))]
    allowed = ", ".join(s.token for s in schemes) or "none"
    out = [Outcome(f"connections.{name}.remote.auth", True, f"peer AUTH signatures limited to {allowed} "
                   "at IKE_AUTH")
           for name, conn in ctx.config.model.connections.items() if conn.remote.auth == "pubkey"]
    return out or [Outcome("connections", True, "no certificate-authenticated peers")]
