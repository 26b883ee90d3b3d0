"""The cryptographic inventory (PCI DSS 4.0.1 12.3.3) and the certificate inventory of an evidence pack.

Suites *configured* come from the configuration; suites *negotiated* only from the trail's records of SAs
coming up (``ike.up``, ``ike.rekeyed``: the IKE proposal; ``child.up``, ``child.rekeyed``: the ESP proposal),
counted per connection and peer with first and last time seen. Each suite is judged for retirement: a
transform the profile no longer allows, one it flags with a sunset date, and key exchanges that are not
post-quantum (classical (EC)DH only: "harvest now, decrypt later", RFC 9370 hybrids are the way out,
docs/post-quantum.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from ikeguard.audit.chain import Record
from ikeguard.crypto.key_names import describe_key
from ikeguard.pki.loading import load_certificates
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.profile import Profile
from ikeguard.wire.iana import KeId, ProtocolId
from ikeguard.wire.proposal_string import ProposalSyntaxError, parse_proposal

# event -> protocol of the proposal it carries
NEGOTIATION_EVENTS = {"ike.up": "ike", "ike.rekeyed": "ike", "child.up": "esp", "child.rekeyed": "esp"}
_PQ_KE = {int(KeId.ML_KEM_512), int(KeId.ML_KEM_768), int(KeId.ML_KEM_1024)}
QUANTUM_NOTE = ("quantum-vulnerable key exchange (classical (EC)DH only): plan an ML-KEM hybrid "
                "(RFC 9370, docs/post-quantum.md)")
NO_KE_NOTE = ("no key exchange of its own: keys from the IKE SA's key exchange (see that suite's "
              "retirement; RFC 7296 §2.17)")


def retirement(protocol: str, proposal: str, profile: Profile) -> list[str]:
    """Why ``proposal`` is scheduled for retirement under ``profile`` (empty: nothing planned)."""
    proto = ProtocolId.IKE if protocol == "ike" else ProtocolId.ESP
    try:
        spec = parse_proposal(proposal, proto)
    except (ProposalSyntaxError, ValueError) as exc:
        return [f"unparsable proposal: {exc}"]
    notes: list[str] = []
    for transform in spec.transforms():
        for rule in profile.transform_rules:
            if not rule.covers(protocol, transform):  # type: ignore[arg-type]
                continue
            if not rule.is_allowed(transform):
                notes.append(f"{transform.describe()}: not allowed by profile {profile.name} "
                             f"({rule.rule.id})")
            elif (warning := rule.warning(transform)) is not None:
                notes.append(f"{transform.describe()}: {warning} ({rule.rule.id})")
    kes = [t for t in (*spec.ke, *spec.addke) if t.id != 0]
    if kes and not any(t.id in _PQ_KE for t in kes):
        notes.append(QUANTUM_NOTE)
    elif not kes and protocol == "esp":
        notes.append(NO_KE_NOTE)
    return sorted(set(notes))


@dataclass
class SuiteUse:
    """One suite negotiated on one connection with one peer."""

    connection: str
    peer: str
    protocol: str
    proposal: str
    count: int = 0
    first_seen: str = ""
    last_seen: str = ""
    first_seq: int = 0
    last_seq: int = 0
    events: dict[str, int] = field(default_factory=dict)


def negotiated(records: Iterable[Record]) -> list[SuiteUse]:
    """Suites negotiated in ``records``, one entry per (connection, peer, protocol, proposal)."""
    uses: dict[tuple[str, str, str, str], SuiteUse] = {}
    for record in records:
        body = record.body
        protocol = NEGOTIATION_EVENTS.get(str(body.get("event")))
        if protocol is None or body.get("outcome") != "success":
            continue
        key = (str(body.get("connection", "")), str(body.get("remote_id") or body.get("remote_addr") or ""),
               protocol, str(body.get("proposal", "")))
        use = uses.get(key)
        if use is None:
            use = uses[key] = SuiteUse(*key, first_seen=record.time, first_seq=record.seq)
        use.count += 1
        use.last_seen, use.last_seq = record.time, record.seq
        event = str(body["event"])
        use.events[event] = use.events.get(event, 0) + 1
    return [uses[k] for k in sorted(uses)]


def configured(config: LoadedConfig) -> list[tuple[str, str, str, str]]:
    """``(connection, child, protocol, proposal)`` for every suite the configuration offers or accepts."""
    out: list[tuple[str, str, str, str]] = []
    for name, conn in sorted(config.model.connections.items()):
        out += [(name, "", "ike", str(p)) for p in conn.proposals]
        for child_name, child in sorted(conn.children.items()):
            out += [(name, child_name, "esp", str(p)) for p in child.esp_proposals]
    return out


def crypto_inventory_negotiated(profile: Profile, records: Sequence[Record]) -> list[dict[str, Any]]:
    """The negotiated part of the inventory (recomputed by ``evidence verify`` from the pack's records)."""
    return [{"connection": u.connection, "peer": u.peer, "protocol": u.protocol, "proposal": u.proposal,
             "count": u.count, "first_seen": u.first_seen, "last_seen": u.last_seen, "first_seq": u.first_seq,
             "last_seq": u.last_seq, "events": dict(sorted(u.events.items())),
             "retirement": retirement(u.protocol, u.proposal, profile)} for u in negotiated(records)]


def crypto_inventory(config: LoadedConfig, profile: Profile, records: Sequence[Record]) -> dict[str, Any]:
    """The inventory as JSON: configured suites, negotiated suites, and the retirement plan."""
    conf = [{"connection": c, "child": ch, "protocol": p, "proposal": s,
             "retirement": retirement(p, s, profile)}
            for c, ch, p, s in configured(config)]
    used = crypto_inventory_negotiated(profile, records)
    return {"requirement": "PCI DSS 4.0.1 12.3.3", "profile": profile.name,
            "profile_version": profile.version,
            "configured": conf, "negotiated": used,
            "negotiated_suites": sorted({f"{u['protocol']}:{u['proposal']}" for u in used})}


def crypto_csv(inventory: dict[str, Any]) -> str:
    """One CSV row per configured and per negotiated suite."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["kind", "connection", "child_or_peer", "protocol", "proposal", "count", "first_seen",
                "last_seen", "retirement"])
    for c in inventory["configured"]:
        w.writerow(["configured", c["connection"], c["child"], c["protocol"], c["proposal"], "", "", "",
                    "; ".join(c["retirement"])])
    for u in inventory["negotiated"]:
        w.writerow(["negotiated", u["connection"], u["peer"], u["protocol"], u["proposal"], u["count"],
                    u["first_seen"], u["last_seen"], "; ".join(u["retirement"])])
    return out.getvalue()


# -- certificates --------------------------------------------------------------------------------------------
_CERT_EVENTS = {"cert.validated": "valid", "cert.rejected": "rejected", "revocation.failed": "unknown"}


def _describe(cert: x509.Certificate, source: str, role: str) -> dict[str, Any]:
    return {"role": role, "source": source, "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(), "serial": format(cert.serial_number, "x"),
            "key_type": describe_key(cert),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "revocation": "not checked (our own or a trust anchor)"}


def _config_certs(config: LoadedConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    named: list[tuple[str, str, str]] = []
    for name, conn in sorted(config.model.connections.items()):
        named += [(f"connections.{name}.local.certs", c, "local") for c in conn.local.certs]
        named += [(f"connections.{name}.remote.cacerts", c, "trust anchor") for c in conn.remote.cacerts
                  if c not in config.model.authorities]  # an authority's name: listed with the authorities
    for name, auth in sorted(config.model.authorities.items()):
        named.append((f"authorities.{name}.cacert", auth.cacert, "trust anchor"))
    seen: set[tuple[str, str]] = set()
    for scope, relative, role in named:
        path: Path = config.resolve(relative)
        try:
            certs = load_certificates(path.read_bytes())
        except (OSError, ValueError):
            out.append({"role": role, "source": f"{scope}: {relative}", "subject": "", "issuer": "",
                        "serial": "", "key_type": "", "not_after": "", "revocation": "file unreadable"})
            continue
        for cert in certs:
            ident = (cert.issuer.rfc4514_string(), format(cert.serial_number, "x"))
            if ident not in seen:
                seen.add(ident)
                out.append(_describe(cert, f"{scope}: {relative}", role))
    return out


def seen_certificates(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Every peer certificate the trail shows (subject, issuer, serial), with the last check's result."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        body = record.body
        subject = str(body.get("cert_subject") or "")
        if not subject:
            continue
        key = (subject, str(body.get("cert_issuer") or ""), str(body.get("cert_serial") or ""))
        entry = seen.get(key)
        if entry is None:
            entry = seen[key] = {"role": "peer", "source": "audit trail", "subject": key[0], "issuer": key[1],
                                 "serial": key[2], "key_type": "", "not_after": "",
                                 "revocation": "not recorded", "first_seen": record.time,
                                 "first_seq": record.seq,
                                 "connections": [], "peers": []}
        entry["last_seen"], entry["last_seq"] = record.time, record.seq
        for name, value in (("connections", body.get("connection")), ("peers", body.get("remote_id"))):
            if value and value not in entry[name]:
                entry[name].append(value)
        if body.get("event") == "pki.issued":  # a certificate the gateway obtained for itself (docs/pki.md)
            details = body.get("details") if isinstance(body.get("details"), dict) else {}
            assert isinstance(details, dict)
            entry.update(role="local (issued)", not_after=str(details.get("not_after", "")),
                         source=f"pki.issued seq {record.seq} ({details.get('source')})", revocation="issued")
        if body.get("event") == "cert.validated":  # key type and expiry as validated (engine ike_auth)
            details = body.get("details") if isinstance(body.get("details"), dict) else {}
            assert isinstance(details, dict)
            entry.update(key_type=str(details.get("key_type", entry["key_type"])),
                         not_after=str(details.get("not_after", entry["not_after"])))
        verdict = _CERT_EVENTS.get(str(body.get("event")))
        if verdict is not None:
            reason = str(body.get("reason") or "")
            entry["revocation"] = f"{verdict} at {record.time} (seq {record.seq})" + (f": {reason}" if reason
                                                                                      else "")
    for entry in seen.values():
        entry["connections"].sort()
        entry["peers"].sort()
    return [seen[k] for k in sorted(seen)]


def certificate_inventory(config: LoadedConfig, records: Sequence[Record]) -> dict[str, Any]:
    """Certificates configured (ours and trust anchors) and every peer certificate seen in the period."""
    return {"configured": _config_certs(config), "seen": seen_certificates(records),
            "note": "peer certificates: subject, issuer and serial of every certificate accepted or "
                    "rejected; key type and not-after from its last cert.validated record (a rejected "
                    "certificate's are not recorded)"}


def certificate_csv(inventory: dict[str, Any]) -> str:
    """One CSV row per certificate."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    cols = ["role", "source", "subject", "issuer", "serial", "key_type", "not_after", "revocation",
            "first_seen", "last_seen", "connections", "peers"]
    w.writerow(cols)
    for entry in (*inventory["configured"], *inventory["seen"]):
        w.writerow([";".join(v) if isinstance(v := entry.get(c, ""), list) else v for c in cols])
    return out.getvalue()


def days_left(not_after: str, when: dt.datetime) -> int | None:
    """Days from ``when`` to a ``not_after`` text (None when unknown)."""
    if not not_after:
        return None
    return (dt.datetime.fromisoformat(not_after.replace("Z", "+00:00")) - when).days
