"""The VPN CA's part of an evidence pack (``ikeguard evidence --ca DIR``, docs/evidence.md): the issuance log
(``pki.issued``, ``pki.revoked``, ``pki.crl``) and the HSM access log of the CA key (``hsm.*``) from the CA's
own audit trail (``DIR/audit``, written by ``ikeguard pki``), its records of the period as stored (one
verifiable piece of that trail's hash chain, like ``trail/records.jsonl`` of the gateway), and its certificate
inventory as of the end of the period (``DIR/ca.db``). Everything under ``ca/NAME/``; NAME is the CA
directory's name.

The gateway's own trail does not hold these records: the CA is a separate program with its own key and
trail, so its records are read from there, verified with the CA trail's verification key when it is at hand
(``DIR/audit/audit-verification.key``; else "not verified"), and the derived files are checked against the
records by ``ikeguard evidence verify`` like the gateway's.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ikeguard.audit.chain import Record, fingerprint
from ikeguard.audit.lifecycle import verify_trail
from ikeguard.audit.store import AuditStore, read_verification_key
from ikeguard.crypto.pkcs11_key import is_pkcs11_uri, safe_uri_text
from ikeguard.evidence import records
from ikeguard.evidence.period import read_period
from ikeguard.pki.ca import CaError, CertificateAuthority

CA_EVENTS = frozenset({"pki.issued", "pki.revoked", "pki.crl"})  # what `ikeguard pki` records (docs/pki.md)
ISSUANCE_COLUMNS = ("seq", "time", "event", "outcome", "reason", "admin", "cert_subject", "cert_serial",
                    "cert_issuer", "kind", "sans", "not_after", "crl_number", "revoked")
HSM_COLUMNS = ("seq", "time", "event", "outcome", "reason", "key", "count", "error")
INVENTORY_COLUMNS = ("serial", "subject", "sans", "key_type", "not_before", "not_after", "status",
                     "revoked_at", "reason")


class CaEvidenceError(ValueError):
    """A CA directory that cannot go into a pack (no CA, no readable trail, two CAs of one name)."""


@dataclass
class CaSource:
    """One CA directory given with ``--ca``: its trail (open read-only) and verification key, if at hand."""

    directory: Path
    store: AuditStore
    verification_key: bytes | None

    @property
    def name(self) -> str:
        """Where its files go in the pack: ``ca/NAME/``."""
        return self.directory.name

    @classmethod
    def open(cls, directory: Path) -> CaSource:
        """The CA of ``directory`` (``ca.pem``, ``ca.db``, ``audit/``)."""
        if not (directory / "ca.pem").is_file() or not (directory / "ca.db").is_file():
            raise CaEvidenceError(f"{directory}: no CA here (ca.pem and ca.db; `ikeguard pki init`)")
        try:
            store = AuditStore(directory / "audit", create=False)
        except (OSError, ValueError) as exc:
            raise CaEvidenceError(f"{directory}: no readable CA audit trail in audit/: {exc}") from exc
        key_path = store.verification_key_path
        try:
            key = read_verification_key(key_path) if key_path.is_file() else None
        except (OSError, ValueError):
            key = None
        return cls(directory, store, key)

    def close(self) -> None:
        """Close the trail."""
        self.store.close()


def open_all(directories: Sequence[Path]) -> list[CaSource]:
    """Every ``--ca`` directory opened; names must differ (they name the pack's folders)."""
    sources: list[CaSource] = []
    try:
        for directory in directories:
            source = CaSource.open(directory)
            if any(s.name == source.name for s in sources):
                source.close()
                raise CaEvidenceError(f"{directory}: two CA directories named {source.name!r}")
            sources.append(source)
    except CaEvidenceError:
        for s in sources:
            s.close()
        raise
    return sources


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _ca_identity(ca: CertificateAuthority) -> dict[str, Any]:
    try:
        cert = ca.cert
    except CaError:
        return {}
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    key_ref = ca.meta("key")
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"), "spki_sha256": hashlib.sha256(spki).hexdigest(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            # where the CA key lives: a PKCS#11 URI without its PIN source, or "file"
            "key": safe_uri_text(key_ref) if is_pkcs11_uri(key_ref) else ("file" if key_ref else "")}


def inventory_rows(ca: CertificateAuthority, end: dt.datetime) -> list[dict[str, str]]:
    """The certificates the CA had issued by ``end``, with their status as of ``end``."""
    rows = []
    for r in ca.records():
        if dt.datetime.fromisoformat(r.not_before) >= end:
            continue
        revoked = r.revoked_at is not None and dt.datetime.fromisoformat(r.revoked_at) < end
        expired = dt.datetime.fromisoformat(r.not_after) <= end
        rows.append({"serial": r.serial, "subject": r.subject, "sans": r.sans, "key_type": r.key_type,
                     "not_before": r.not_before, "not_after": r.not_after,
                     "status": "revoked" if revoked else "expired" if expired else "valid",
                     "revoked_at": (r.revoked_at or "") if revoked else "",
                     "reason": (r.reason or "") if revoked else ""})
    return rows


def _csv(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([row.get(c, "") for c in columns])
    return out.getvalue().encode()


def derived_files(prefix: str, recs: Sequence[Record]) -> dict[str, bytes]:
    """The files made from the CA trail's records alone (what ``evidence verify`` recomputes)."""
    issued = records.select(recs, CA_EVENTS)
    hsm = records.select(recs, records.HSM_EVENTS)
    return {f"{prefix}issuance.csv": records.to_csv(issued, ISSUANCE_COLUMNS).encode(),
            f"{prefix}issuance.ecs.jsonl": records.to_ecs_lines(issued).encode(),
            f"{prefix}hsm-access.csv": records.to_csv(hsm, HSM_COLUMNS).encode(),
            f"{prefix}hsm-access.ecs.jsonl": records.to_ecs_lines(hsm).encode()}


def summary(recs: Sequence[Record]) -> dict[str, int]:
    """Counts the report shows: certificates issued and revoked, CRLs, token logins, signatures, errors."""
    def count(event: str) -> int:
        return sum(1 for r in recs if r.body.get("event") == event)

    signatures = 0
    for r in records.select(recs, frozenset({"hsm.sign"})):
        details = r.body.get("details")
        if isinstance(details, dict) and isinstance(details.get("count"), int):
            signatures += int(details["count"])
    return {"issued": count("pki.issued"), "revoked": count("pki.revoked"), "crls": count("pki.crl"),
            "hsm_logins": count("hsm.login"), "hsm_signatures": signatures, "hsm_errors": count("hsm.error")}


def ca_files(source: CaSource, start: dt.datetime, end: dt.datetime) -> dict[str, bytes]:
    """``ca/NAME/*`` of the pack for the period ``[start, end)``."""
    prefix = f"ca/{source.name}/"
    period = read_period(source.store, start, end)
    recs = list(period.records)
    ca = CertificateAuthority(source.directory)
    files = {f"{prefix}period.json": _json({**period.to_json(), "ca": _ca_identity(ca),
                                            "trail_fingerprint": source.store.fingerprint,
                                            "summary": summary(recs)}),
             f"{prefix}records.jsonl": "".join(json.dumps(r.to_json(), sort_keys=True, ensure_ascii=False)
                                               + "\n" for r in recs).encode()}
    files.update(derived_files(prefix, recs))
    inventory = inventory_rows(ca, end)
    files[f"{prefix}certificates.json"] = _json(inventory)
    files[f"{prefix}certificates.csv"] = _csv(inventory, INVENTORY_COLUMNS)
    return files


def at_creation(source: CaSource) -> dict[str, Any]:
    """The CA trail when the pack was made: chain head and ``audit verify`` with its verification key."""
    head_seq, head_hash = source.store.head()
    out: dict[str, Any] = {"chain_head": {"seq": head_seq, "hash": head_hash.hex()},
                           "fingerprint": source.store.fingerprint}
    if source.verification_key is None:
        out["audit_verify"] = {"ok": None, "reason": "no verification key in the CA's audit directory: "
                                                     "not verified"}
    else:
        report = verify_trail(source.store, source.verification_key)
        out["audit_verify"] = {"ok": report.ok, "checked": report.checked,
                               "key_fingerprint": fingerprint(source.verification_key),
                               "first_bad_seq": report.finding.seq if report.finding else None,
                               "reason": report.finding.reason if report.finding else ""}
    return out


def names_in(files: Mapping[str, bytes]) -> list[str]:
    """The CAs a pack holds (``ca/NAME/period.json``)."""
    return sorted({name.split("/")[1] for name in files
                   if name.startswith("ca/") and name.endswith("/period.json") and name.count("/") == 2})


def records_in(files: Mapping[str, bytes], name: str) -> list[Record]:
    """The CA trail records a pack carries for CA ``name``."""
    data = files.get(f"ca/{name}/records.jsonl", b"").decode()
    return [Record.from_json(json.loads(line)) for line in data.splitlines() if line.strip()]
