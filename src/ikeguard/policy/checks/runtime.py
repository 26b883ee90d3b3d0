"""Rules only the running gateway can answer: revocation checking at IKE_AUTH, SIEM delivery, crypto module.

Without the gateway (``check`` without ``--socket``) they are "not verified", never "pass": a configuration
can ask for revocation checking and a SIEM sink, but whether the running process checks and delivers is a
fact about that process. With ``--socket`` the report asks the gateway's control socket (``compliance``
command, :func:`ikeguard.service.compliance.runtime_facts`) and judges what it answers.
"""

from __future__ import annotations

from typing import Any

from ikeguard.crypto.module import NOT_CLAIMED, describe, module_facts
from ikeguard.policy.checks.base import CheckContext, Outcome, conn_target, register
from ikeguard.policy.profile import Rule
from ikeguard.policy.values import format_duration

NO_SOCKET = "needs the running gateway: run `ikeguard check --socket <state_dir>/control.sock`"


@register("revocation_runtime")
def check_revocation_runtime(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Certificate-authenticated peers: the running gateway validates each peer chain against the connection's
    CRLs / OCSP during IKE_AUTH (``remote.revocation`` decides the soft/hard failure) and again at every
    reauthentication, so an established SA of a revoked peer ends at its next reauth (RFC 5280 §6.3). Judged
    from the running gateway's answer: every pubkey connection of this configuration is loaded there, with
    the configured revocation mode and a revocation source."""
    conns = {n: c for n, c in ctx.config.model.connections.items()
             if c.remote.auth == "pubkey" and not c.remote.pubkeys}  # raw keys: revocation_config reports
    if not conns:
        return [Outcome("connections", True, "no certificate-authenticated peers")]
    running: dict[str, Any] | None = ctx.runtime.get("connections") if ctx.runtime is not None else None
    out: list[Outcome] = []
    for name, conn in conns.items():
        scope = f"connections.{name}.remote.revocation"
        if running is None:
            out.append(
                Outcome(
                    scope,
                    False,
                    conn.remote.revocation,
                    f"not verified: {NO_SOCKET}",
                    not_verified=True,
                    file=ctx.file,
                )
            )
            continue
        facts = running.get(name)
        if not isinstance(facts, dict):
            out.append(
                Outcome(
                    scope,
                    False,
                    conn.remote.revocation,
                    "the running gateway has no connection "
                    f"{name!r} (it runs another configuration, or it was quarantined)",
                    file=ctx.file,
                )
            )
            continue
        mode, source = facts.get("revocation"), facts.get("revocation_source")
        if mode != conn.remote.revocation or source in (None, "none"):
            out.append(
                Outcome(
                    scope,
                    False,
                    f"running: {mode}, source {source}",
                    "the running gateway does "
                    f"not check revocation as configured ({conn.remote.revocation!r} with a "
                    "CRL/OCSP source)",
                    file=ctx.file,
                )
            )
            continue
        value = f"running: {mode} at IKE_AUTH ({source})"
        reauth = int(facts.get("reauth_time") or 0)
        if not reauth:
            out.append(
                Outcome(
                    scope,
                    True,
                    value,
                    "reauth_time is not set: an established SA of a peer revoked later runs until it closes",
                    warning=True,
                    file=ctx.file,
                )
            )
        else:
            out.append(
                Outcome(scope, True, f"{value} and at reauthentication every {format_duration(reauth)}")
            )
    return out


@register("siem_delivery")
def check_siem_delivery(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Each syslog-tls sink: the running gateway forwards every record over mutual TLS with a durable spool
    (at-least-once) and records ``audit.sink.down``/``up`` (PCI DSS 4.0.1 10.7.2). Judged from the running
    gateway's answer: the audit trail is healthy and the sink's mutual-TLS connection is up now."""
    sinks = [(i, s) for i, s in enumerate(ctx.config.model.audit.sinks) if s.type == "syslog-tls"]
    if not sinks:
        return [
            Outcome("audit.sinks", False, None, 'no sink of type "syslog-tls" to deliver to', file=ctx.file)
        ]
    audit: dict[str, Any] | None = ctx.runtime.get("audit") if ctx.runtime is not None else None
    out: list[Outcome] = []
    for i, sink in sinks:
        scope = f"audit.sinks[{i}]"
        if audit is None:
            out.append(
                Outcome(
                    scope,
                    False,
                    str(sink.address),
                    f"not verified: {NO_SOCKET}",
                    not_verified=True,
                    file=ctx.file,
                )
            )
            continue
        running = next((s for s in audit.get("sinks", []) if s.get("index") == i), None)
        if running is None or str(running.get("address")).replace("[", "").replace("]", "") != str(
            sink.address
        ).replace("[", "").replace("]", ""):
            out.append(
                Outcome(
                    scope,
                    False,
                    str(sink.address),
                    "the running gateway does not deliver to this sink (it runs another configuration)",
                    file=ctx.file,
                )
            )
        elif not audit.get("healthy", False):
            out.append(
                Outcome(
                    scope,
                    False,
                    str(sink.address),
                    f"the gateway's audit trail is failing: {audit.get('failure')}",
                    file=ctx.file,
                )
            )
        elif running.get("connected") is None:
            out.append(
                Outcome(
                    scope,
                    False,
                    str(sink.address),
                    "not verified: the gateway does not report this sink's connection",
                    not_verified=True,
                    file=ctx.file,
                )
            )
        elif not running["connected"]:
            out.append(
                Outcome(
                    scope,
                    False,
                    str(sink.address),
                    f"not connected: {running.get('undelivered')} "
                    "records not delivered yet (the SIEM is unreachable; audit.sink.down is "
                    "recorded)",
                    file=ctx.file,
                )
            )
        else:
            out.append(
                Outcome(
                    scope,
                    True,
                    f"{sink.address}: connected, {running.get('undelivered')} records "
                    "in flight (running gateway)",
                )
            )
    return out


@register("crypto_module")
def check_crypto_module(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Which cryptographic modules run (the gateway's answer with ``--socket``, else this host's): always
    "not verified", because FIPS 140 validation is established by a CMVP certificate and its operational
    environment, not by ikeguard."""
    dataplane = ctx.config.model.gateway.dataplane
    facts = ctx.runtime.get("crypto_module") if ctx.runtime is not None else None
    where = "the running gateway" if isinstance(facts, dict) else "this host (not the running gateway)"
    if not isinstance(facts, dict):
        facts = module_facts(dataplane)
    return [Outcome("(crypto module)", False, f"{where}: {describe(facts)}", NOT_CLAIMED, not_verified=True)]


@register("quantum_exposure")
def check_quantum_exposure(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Every IKE SA the running gateway holds has a post-quantum component: an ML-KEM key exchange (RFC 9370)
    or an RFC 8784 PPK; one with neither is quantum-vulnerable (recorded now, decrypted later). Judged from
    the running gateway's answer (``check --socket``); without it, not verified."""
    sas = ctx.runtime.get("sas") if ctx.runtime is not None else None
    if not isinstance(sas, list):
        return [Outcome("(established IKE SAs)", False, None, f"not verified: {NO_SOCKET}",
                        not_verified=True, file=ctx.file)]
    if not sas:
        return [Outcome("(established IKE SAs)", True, "none established (running gateway)")]
    out: list[Outcome] = []
    for sa in sas:
        scope = f"connections.{sa.get('connection')}"
        kes = "+".join(sa.get("key_exchanges", []))
        shown = f"IKE SA {sa.get('uniqueid')} with {sa.get('remote_id')}: {kes}"
        if sa.get("post_quantum") or sa.get("ppk"):
            out.append(Outcome(scope, True, shown))
        else:
            out.append(Outcome(scope, False, shown, "quantum-vulnerable: no ML-KEM key exchange and no PPK",
                               file=ctx.file, target=conn_target(str(sa.get("connection")))))
    return out
