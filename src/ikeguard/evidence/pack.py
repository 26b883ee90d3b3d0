"""Assemble an evidence pack (docs/evidence.md): every file from the gateway's own records, a manifest with
the SHA-256 of each file, and the manifest sealed by the audit trail itself.

Determinism: for the same trail period and configuration every file is byte-identical, except
``integrity/at-creation.json`` (the trail's state when the pack was made: each pack is itself recorded, so
the trail has grown) and the manifest and its seal. Times are the records' times; the check report is judged
as of the end of the period. The zip entries carry a fixed date and are stored in name order.

The seal: the pack's making is recorded as ``audit.exported`` (``details.kind = "evidence"``, the period's
sequence range and the manifest's digest; PCI DSS 10.2.1.3) and the manifest is sealed with that record's
sealing key, ``HMAC(k_N, "bundle" || SHA-256(manifest.json))`` (the bundle seal of docs/audit.md §5). Only
the holder of the verification key can check it, and nobody can make it afterwards: ``k_N`` is erased when
the record is committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikeguard.audit.chain import Record, fingerprint
from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.lifecycle import verify_trail
from ikeguard.audit.store import AuditStore, rfc3339
from ikeguard.evidence import inventory, records, signing
from ikeguard.evidence import report as readable
from ikeguard.evidence.ca import CaSource, ca_files
from ikeguard.evidence.ca import at_creation as ca_at_creation
from ikeguard.evidence.period import Period, read_period
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.profile import load_profile
from ikeguard.policy.report import evaluate

FORMAT = "ikeguard-evidence/1"
MANIFEST = "manifest.json"
SEAL = "manifest.seal.json"
VOLATILE = "integrity/at-creation.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SECRET_KEY = re.compile(r"(secret|psk|passw|private|token|credential|^key$)", re.IGNORECASE)
NO_ISSUANCE = ("No certificate authority is included (`ikeguard evidence --ca DIR` adds an `ikeguard pki` "
               "CA): the gateway itself issues no certificates to peers. The issuance log "
               "below lists the certificates the gateway obtained for itself by enrolment (e.g. ACME: "
               "pki.issued, and failed renewals: pki.renewal_failed, docs/pki.md); the certificate "
               "inventory lists every certificate configured, obtained, accepted or rejected.\n")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def redact(value: Any, key: str = "") -> Any:
    """The configuration without secrets: values of secret-like keys replaced (names and paths kept)."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if value is not None and key and _SECRET_KEY.search(key) and not key.endswith(("_file", "file")):
        return "[redacted]"
    return value


class PackError(ValueError):
    """An input that cannot go into a pack (e.g. a file that is not a scan result)."""


def scan_document(data: bytes, name: str) -> bytes:
    """``data`` if it is an ``ikeguard scan --json`` document (``schema`` ``ikeguard-scan/1``)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise PackError(f"{name}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != "ikeguard-scan/1":
        raise PackError(f"{name}: not an `ikeguard scan --json` result (schema ikeguard-scan/1)")
    return data


@dataclass
class PackInput:
    """What a pack is made from."""

    config: LoadedConfig
    store: AuditStore
    start: dt.datetime
    end: dt.datetime
    verification_key: bytes | None = None
    admin: str = ""
    scans: tuple[bytes, ...] = ()  # `ikeguard scan --json` documents of this gateway (ikeguard-scan/1)
    sign_key: str | None = None  # PEM file or pkcs11: URI: also sign the manifest (evidence/signing.py)
    cas: tuple[CaSource, ...] = ()  # `ikeguard pki` CAs whose issuance and HSM logs go in (evidence/ca.py)


def content_files(src: PackInput, period: Period) -> dict[str, bytes]:
    """Every file of the pack except the manifest, its seal and ``integrity/at-creation.json``."""
    config, recs = src.config, list(period.records)
    profile = load_profile(config.profile_name)
    report = evaluate(config, profile, now=src.end)
    files: dict[str, bytes] = {}
    files["period.json"] = _json({**period.to_json(), "format": FORMAT, "config": str(config.path),
                                  "profile": profile.name, "trail_fingerprint": src.store.fingerprint})
    # configuration: snapshot with digests, history of changes (PCI DSS 1.2.2, 10.2.1.5; NIST CM-3, CM-6)
    loaded = [r for r in recs if r.body.get("event") == "config.loaded"]
    last = loaded[-1].body.get("details") if loaded else None
    last_digest = last.get("config_sha256") if isinstance(last, dict) else None
    current = report.digest.sha256 if report.digest is not None else None
    snapshot = {"digest": report.digest.to_json() if report.digest is not None else None,
                # each config.loaded record names the digest that came into force (service/startup.py)
                "last_loaded_in_period": {"seq": loaded[-1].seq if loaded else None,
                                          "config_sha256": last_digest,
                                          "same_as_this_snapshot": last_digest is not None
                                          and last_digest == current},
                "profile": {"name": profile.name, "version": profile.version, "digest": profile.digest},
                "configuration": redact(config.model.model_dump(mode="json"))}
    files["config/snapshot.json"] = _json(snapshot)
    changes = records.change_rows(recs)
    files["config/changes.json"] = _json(changes)
    files["config/changes.csv"] = records.to_csv(
        records.select(recs, records.CHANGE_EVENTS),
        ("seq", "time", "event", "outcome", "admin", "ticket", "connection", "remote_id", "reason")).encode()
    # compliance: the check report with its control mapping and waivers (PCI DSS 12.4, NIST CA-2)
    files["compliance/check.json"] = _json(report.to_json())
    # cryptographic inventory (PCI DSS 4.0.1 12.3.3)
    crypto = inventory.crypto_inventory(config, profile, recs)
    files["inventory/crypto.json"] = _json(crypto)
    files["inventory/crypto.csv"] = inventory.crypto_csv(crypto).encode()
    certs = inventory.certificate_inventory(config, recs)
    files["inventory/certificates.json"] = _json(certs)
    files["inventory/certificates.csv"] = inventory.certificate_csv(certs).encode()
    # PKI: HSM access log from hsm.* records; issuance log (none: no CA in ikeguard)
    hsm = records.select(recs, records.HSM_EVENTS)
    files["pki/hsm-access.csv"] = records.to_csv(
        hsm, ("seq", "time", "event", "outcome", "reason", "key", "count", "error")).encode()
    files["pki/hsm-access.ecs.jsonl"] = records.to_ecs_lines(hsm).encode()
    issued = records.select(recs, records.PKI_EVENTS)
    files["pki/issuance.csv"] = records.to_csv(
        issued, ("seq", "time", "event", "outcome", "reason", "connection", "cert_subject", "cert_serial",
                 "cert_issuer", "source", "ca", "renewal", "not_before", "not_after", "identifiers")).encode()
    files["pki/issuance.ecs.jsonl"] = records.to_ecs_lines(issued).encode()
    cas = "".join(f"The CA {c.name} (`ikeguard pki`): its issuance log, the HSM access log of its key and "
                  f"its certificate inventory are in ca/{c.name}/.\n" for c in src.cas)
    files["pki/issuance.txt"] = ((cas or NO_ISSUANCE) + f"The gateway's own issuance log of this period: "
                                 f"{len(issued)} record(s) (pki.issued, pki.renewal_failed) in issuance.csv "
                                 "and issuance.ecs.jsonl.\n").encode()
    # the VPN CA's own trail: issuance, revocation, CRLs and its key's HSM access log (issue 18)
    for ca in src.cas:
        files.update(ca_files(ca, src.start, src.end))
    # connection records for the SIEM (PCI DSS 10.2.1, 10.2.1.4; NIST AU-3)
    conn = records.select(recs, records.CONNECTION_EVENTS)
    files["connections/records.ecs.jsonl"] = records.to_ecs_lines(conn).encode()
    files["connections/records.csv"] = records.to_csv(conn).encode()
    files["connections/summary.json"] = _json(records.connection_summary(conn))
    # the trail's records of the period exactly as stored (chain fields and seals): what everything above
    # was derived from, verifiable with the verification key (PCI DSS 10.3.2-10.3.4)
    files["trail/records.jsonl"] = "".join(json.dumps(r.to_json(), sort_keys=True, ensure_ascii=False) + "\n"
                                           for r in recs).encode()
    # the gateway's own scan results, as `ikeguard scan --json` wrote them (PCI DSS 11.3, 12.3.3)
    for i, scan in enumerate(src.scans, 1):
        files[f"scan/scan-{i}.json"] = scan
    # the report people read, summary first, and the same as PDF
    html = readable.build_html(files)
    files["report.html"] = html.encode()
    try:
        files["report.pdf"] = readable.build_pdf(html)
    except (ImportError, OSError) as exc:
        files["report-pdf-missing.txt"] = (f"report.pdf was not made: WeasyPrint is not usable here "
                                           f"({type(exc).__name__}: {exc}); report.html has the same "
                                           "content.\n").encode()
    return files


def at_creation(src: PackInput) -> dict[str, Any]:
    """The trail when the pack was made: `audit verify` result, chain head, archive segments, retention."""
    head_seq, head_hash = src.store.head()
    audit_cfg = src.config.model.audit
    out: dict[str, Any] = {"chain_head": {"seq": head_seq, "hash": head_hash.hex()},
                           "fingerprint": src.store.fingerprint,
                           "retention": {"requirement": "PCI DSS 4.0.1 10.5.1",
                                         "retention_days": audit_cfg.retention_days,
                                         "online_days": audit_cfg.online_days,
                                         "archive_segments": [p.name for p in src.store.archive_files()],
                                         # the seal anchors: where each segment ends in the chain and
                                         # which record sealed it (docs/audit.md §5, §6)
                                         "archive_anchors": [
                                             {"file": n, "from_seq": a, "to_seq": b, "last_hash": h.hex(),
                                              "sealed_by_seq": by}
                                             for n, a, b, h, by in src.store.archive_index()],
                                         "disposed_segments": [
                                             {"file": n, "from_seq": a, "to_seq": b}
                                             for n, a, b, _h in src.store.disposed_segments()],
                                         "online_from_seq": src.store.first_online_seq()}}
    if src.verification_key is None:
        out["audit_verify"] = {"ok": None, "reason": "no verification key given: not verified (give --key)"}
    else:
        report = verify_trail(src.store, src.verification_key)
        out["audit_verify"] = {"ok": report.ok, "checked": report.checked,
                               "key_fingerprint": fingerprint(src.verification_key),
                               "first_bad_seq": report.finding.seq if report.finding else None,
                               "reason": report.finding.reason if report.finding else "",
                               "notes": report.notes}
    if src.cas:
        out["ca"] = {ca.name: ca_at_creation(ca) for ca in src.cas}
    return out


def manifest(files: Mapping[str, bytes], period: Period, fpr: str) -> bytes:
    """The manifest: SHA-256 of every file, the period and the trail's key fingerprint."""
    return _json({"format": FORMAT, "period": period.to_json(), "fingerprint": fpr,
                  "files": {name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files)}})


def build(src: PackInput) -> dict[str, bytes]:
    """All files of the pack, the manifest sealed through the trail (one ``audit.exported`` record)."""
    period = read_period(src.store, src.start, src.end)
    files = content_files(src, period)
    files[VOLATILE] = _json(at_creation(src))
    man = manifest(files, period, src.store.fingerprint)
    digest = hashlib.sha256(man).digest()
    span = f"{period.first_seq}..{period.last_seq}" if period.records else "none"
    event = AuditEvent(EventName.AUDIT_EXPORTED, admin=src.admin,
                       reason=f"evidence pack {rfc3339(src.start)}..{rfc3339(src.end)}, records {span}",
                       details={"kind": "evidence", "from_seq": period.first_seq or 0,
                                "to_seq": period.last_seq or 0, "digest": digest.hex()})
    files[MANIFEST] = man
    if src.sign_key is not None:  # before the trail records the pack: a key that cannot sign stops here
        files[signing.SIGNATURE] = _json(signing.sign_manifest(man, src.sign_key, src.config.base_dir))
    seq, seal = src.store.append_sealing(event, digest)
    files[SEAL] = _json({"method": "audit-seal", "fingerprint": src.store.fingerprint, "seq": seq,
                         "manifest_sha256": digest.hex(), "seal": seal.hex(),
                         "how": "HMAC-SHA-256(k_seq, 'ikeguard-audit-v1 bundle' || SHA-256(manifest.json)), "
                                "k_seq derived from the verification key (docs/audit.md)"})
    return files


def write(files: Mapping[str, bytes], out: Path) -> None:
    """Write a pack as a zip (``.zip``; fixed dates, name order) or as a directory."""
    if out.suffix == ".zip":
        tmp = out.with_name(out.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, files[name])
        tmp.replace(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out}: directory not empty")
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read(pack: Path) -> dict[str, bytes]:
    """The files of a pack (zip or directory)."""
    if pack.is_dir():
        return {p.relative_to(pack).as_posix(): p.read_bytes()
                for p in sorted(pack.rglob("*")) if p.is_file()}
    with zipfile.ZipFile(pack) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


def records_of(files: Mapping[str, bytes]) -> list[Record]:
    """The trail records carried in a pack."""
    data = files.get("trail/records.jsonl", b"").decode()
    return [Record.from_json(json.loads(line)) for line in data.splitlines() if line.strip()]
