"""What the running gateway tells ``ikeguard check --socket`` (control command ``compliance``): the facts the
runtime rules judge (``ikeguard.policy.checks.runtime``), taken from the live plan, PKI validator and audit
trail rather than from the configuration file: which connections run with which revocation checking, whether
the audit trail is healthy and each SIEM sink has delivered every record, which crypto modules are in use."""

from __future__ import annotations

from typing import Any

from ikeguard.crypto.module import module_facts
from ikeguard.engine.info import ike_sa_info


def _revocation_source(trust: Any) -> str:
    source = type(getattr(trust, "revocation", None)).__name__
    return "none" if source in ("NoRevocation", "NoneType") else source


def runtime_facts(gateway: Any) -> dict[str, Any]:
    """The running gateway's answer (JSON-serialisable)."""
    plan = gateway.plan
    model = plan.config.model
    validator = getattr(plan, "validator", None)
    trusts = getattr(validator, "connections", {}) or {}
    connections: dict[str, Any] = {}
    for name, conn in model.connections.items():
        if name in plan.config.disabled_connections:
            continue
        trust = trusts.get(name)
        connections[name] = {
            "auth": conn.remote.auth,
            "revocation": trust.policy.revocation.value if trust is not None else None,
            "revocation_source": _revocation_source(trust) if trust is not None else None,
            "reauth_time": conn.reauth_time,
        }
    audit = gateway.audit
    depth: dict[str, int] = dict(audit.spool_depth()) if hasattr(audit, "spool_depth") else {}
    connected: dict[str, bool] = dict(audit.sink_connected()) if hasattr(audit, "sink_connected") else {}
    sinks = []
    for i, spec in enumerate(plan.audit_sinks):
        tls = spec.tls
        sinks.append(
            {
                "index": i,
                "name": spec.name,
                "type": spec.type,
                "address": f"{tls.host}:{tls.port}" if tls is not None else None,
                "undelivered": depth.get(spec.name),
                "connected": connected.get(spec.name),
            }
        )
    return {
        "profile": plan.profile.name,
        "profile_digest": plan.profile.digest,
        "config": str(plan.config.path),
        "connections": connections,
        "audit": {
            "healthy": bool(getattr(audit, "healthy", False)),
            "failure": getattr(audit, "failure", None),
            "sinks": sinks,
        },
        "crypto_module": module_facts(plan.dataplane),
        "sas": _sa_exposure(gateway),
    }


def _sa_exposure(gateway: Any) -> list[dict[str, Any]]:
    """Each established IKE SA with what protects it against a quantum attacker (issue 25): the key
    exchanges (ML-KEM in IKE_INTERMEDIATE, RFC 9370) and whether an RFC 8784 PPK is mixed in."""
    engine = getattr(gateway, "engine", None)
    if engine is None:
        return []
    out = []
    for sa in engine.ike_sas():
        if sa.state.value not in ("established", "rekeying"):
            continue
        info = ike_sa_info(sa)
        out.append({"connection": info["name"], "uniqueid": info["uniqueid"], "remote_id": info["remote_id"],
                    "key_exchanges": info["key_exchanges"], "post_quantum": info["post_quantum"],
                    "ppk": info["ppk"]})
    return out
