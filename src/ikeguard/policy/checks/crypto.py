"""Checks on configured proposals: transform lists, AEAD/integrity pairing, required ADDKE, PFS.

All of them go through :func:`ikeguard.policy.proposals.suite_violations`, the function the wire
selection uses too (one rule set, three enforcement points).
"""

from __future__ import annotations

from ikeguard.policy.checks.base import CheckContext, Outcome, conn_target, register
from ikeguard.policy.profile import Rule
from ikeguard.policy.proposals import parse_configured, strength, suite_violations


def _scan(ctx: CheckContext) -> dict[str, list[Outcome]]:
    """Rule id -> outcomes for every configured IKE and ESP proposal (computed once per evaluation)."""
    cached = ctx.cache.get("proposal_scan")
    if cached is not None:
        return dict(cached)
    by_rule: dict[str, list[Outcome]] = {}
    for name, conn in ctx.config.model.connections.items():
        items = [(f"connections.{name}.proposals[{i}]", text, "ike")
                 for i, text in enumerate(conn.proposals)]
        for cname, child in conn.children.items():
            items += [(f"connections.{name}.children.{cname}.esp_proposals[{i}]", text, "esp")
                      for i, text in enumerate(child.esp_proposals)]
        for scope, text, protocol in items:
            spec = parse_configured(text, "ike" if protocol == "ike" else "esp")
            for v in suite_violations(ctx.profile, "ike" if protocol == "ike" else "esp", spec.transforms()):
                by_rule.setdefault(v.rule.id, []).append(Outcome(
                    scope, ok=v.warning, value=text, message=v.message, warning=v.warning, file=ctx.file,
                    target=conn_target(name)))
    ctx.cache["proposal_scan"] = by_rule
    return by_rule


def _scanned(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    found = _scan(ctx).get(rule.id, [])
    if any(not o.ok for o in found):
        return found
    protocol = rule.params.get("protocol")
    count = sum(len(c.proposals) if protocol != "esp" else 0 for c in ctx.config.model.connections.values())
    count += sum(len(ch.esp_proposals) if protocol != "ike" else 0
                 for c in ctx.config.model.connections.values() for ch in c.children.values())
    if not count:
        return found
    return [*found, Outcome("connections", True, f"{count} configured proposals")]


@register("transforms")
def check_transforms(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Every configured transform of the governed type is in the rule's allowed list."""
    return _scanned(rule, ctx)


@register("aead_integrity")
def check_aead_integrity(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """No unauthenticated cipher (RFC 8221 §4)."""
    return _scanned(rule, ctx)


@register("addke_required")
def check_addke_required(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Every proposal carries one of the required additional key exchanges (RFC 9370)."""
    return _scanned(rule, ctx)


@register("intermediate_exchange")
def check_intermediate_exchange(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """ML-KEM runs in IKE_INTERMEDIATE (RFC 9242), where its KE payloads (up to 1572 octets for ML-KEM-1024)
    exceed a 1280-octet datagram: a connection with additional key exchanges must allow IKE fragmentation
    (RFC 7383), else the exchange depends on IP fragments that the path may drop."""
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        if not any(parse_configured(text, "ike").addke for text in conn.proposals):
            continue
        scope = f"connections.{name}.fragmentation"
        if conn.fragmentation in (False, "no"):
            out.append(Outcome(scope, False, str(conn.fragmentation).lower(),
                               "additional key exchanges without IKE fragmentation (RFC 7383): ML-KEM KE "
                               "payloads in IKE_INTERMEDIATE exceed one 1280-octet datagram",
                               file=ctx.file, target=conn_target(name)))
        else:
            out.append(Outcome(scope, True, str(conn.fragmentation).lower()))
    return out


@register("pfs")
def check_pfs(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Every ESP proposal has a key exchange (PFS), as strong as (or equal to) the IKE SA's."""
    out: list[Outcome] = []
    equal = rule.params.get("compare") == "equal"
    for name, conn in ctx.config.model.connections.items():
        ike_kes = [t for text in conn.proposals for t in parse_configured(text, "ike").ke]
        ike_min = min((strength(t) for t in ike_kes), default=0)
        ike_ids = {t.id for t in ike_kes}
        for cname, child in conn.children.items():
            for i, text in enumerate(child.esp_proposals):
                scope = f"connections.{name}.children.{cname}.esp_proposals[{i}]"
                kes = [t for t in parse_configured(text, "esp").ke if t.id != 0]
                if not kes:
                    out.append(Outcome(scope, False, text, "no key exchange in the ESP proposal: PFS is off",
                                       file=ctx.file, target=conn_target(name)))
                    continue
                weak = [t for t in kes if (t.id not in ike_ids if equal else strength(t) < ike_min)]
                if weak:
                    relation = "the IKE SA's group" if equal else "as strong as the IKE SA's group"
                    out.append(Outcome(scope, False, text,
                                       f"PFS group {weak[0].describe()} is not {relation}",
                                       file=ctx.file, target=conn_target(name)))
                else:
                    out.append(Outcome(scope, True, text))
    return out
