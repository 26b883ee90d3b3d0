"""``ikeguard evidence verify PACK``: check an evidence pack offline and name what changed.

In order: every file the manifest lists is present with its SHA-256 and no file was added; the manifest's
seal was made by the trail (``audit.exported`` record N, key ``k_N`` derived from the verification key); the
trail records in the pack verify as one piece of the hash chain (per-record seals, docs/audit.md §3), so a
pack made from a tampered trail names the first bad record; and the files derived from those records
(connection records, negotiated suites, certificates seen, configuration history, HSM and issuance logs, the
report) are exactly what the records and the pack's files give, so a pack re-made around changed records is
caught even with a valid manifest. The same for each CA's records and logs under ``ca/NAME/``
(evidence/ca.py), its seals checked with that CA trail's own verification key (``--ca-key NAME=FILE``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ikeguard.audit.chain import Record, bundle_seal, fingerprint, key_at, mac_equal, verify_records
from ikeguard.evidence import ca, inventory, records, signing
from ikeguard.evidence import report as readable
from ikeguard.evidence.pack import MANIFEST, SEAL, records_of
from ikeguard.policy.profile import ProfileNotFound, load_profile


@dataclass
class PackReport:
    """Outcome: ``problems`` names every file or record that is not as sealed."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked_files: int = 0
    checked_records: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing changed."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON form (``evidence verify --json``)."""
        return {"ok": self.ok, "problems": self.problems, "notes": self.notes,
                "checked_files": self.checked_files, "checked_records": self.checked_records}


def _load(files: Mapping[str, bytes], name: str) -> Any:
    return json.loads(files[name])


def _check_files(files: Mapping[str, bytes], listed: Mapping[str, str], report: PackReport) -> None:
    for name in sorted(listed):
        if name not in files:
            report.problems.append(f"{name}: removed (listed in the manifest)")
        elif hashlib.sha256(files[name]).hexdigest() != listed[name]:
            report.problems.append(f"{name}: changed (SHA-256 differs from the manifest)")
        else:
            report.checked_files += 1
    for name in sorted(set(files) - set(listed) - {MANIFEST, SEAL, signing.SIGNATURE}):
        report.problems.append(f"{name}: added (not in the manifest)")


def _check_seal(files: Mapping[str, bytes], key: bytes, report: PackReport) -> None:
    try:
        seal = _load(files, SEAL)
        seq, mac = int(seal["seq"]), bytes.fromhex(str(seal["seal"]))
    except (KeyError, ValueError, TypeError) as exc:
        report.problems.append(f"{SEAL}: unreadable ({exc})")
        return
    if seal.get("fingerprint") != fingerprint(key):
        report.problems.append(f"{SEAL}: made for trail key {seal.get('fingerprint')}, "
                               f"not {fingerprint(key)}")
        return
    expected = bundle_seal(key_at(key, 1, seq), hashlib.sha256(files[MANIFEST]).digest())
    if not mac_equal(expected, mac):
        report.problems.append(f"{MANIFEST}: seal invalid (changed after sealing, or not sealed by "
                               f"record {seq})")


def _derived(files: Mapping[str, bytes], profile_name: str) -> dict[str, Any]:
    """What the derived files must contain, recomputed from the pack's trail records."""
    recs = records_of(files)
    conn = records.select(recs, records.CONNECTION_EVENTS)
    expected: dict[str, Any] = {
        "connections/records.ecs.jsonl": records.to_ecs_lines(conn).encode(),
        "connections/records.csv": records.to_csv(conn).encode(),
        "config/changes.json": json.loads(json.dumps(records.change_rows(recs))),
        "pki/hsm-access.ecs.jsonl": records.to_ecs_lines(records.select(recs, records.HSM_EVENTS)).encode(),
        "pki/issuance.ecs.jsonl": records.to_ecs_lines(records.select(recs, records.PKI_EVENTS)).encode(),
        "inventory/certificates.json#seen": json.loads(json.dumps(inventory.seen_certificates(recs))),
    }
    # the report is made from the pack's files alone: it must say what they say
    expected["report.html"] = readable.build_html(files).encode()
    try:
        profile = load_profile(profile_name)
    except ProfileNotFound:
        return expected
    crypto = json.loads(json.dumps(inventory.crypto_inventory_negotiated(profile, recs)))
    expected["inventory/crypto.json#negotiated"] = crypto
    return expected


def _check_derived(files: Mapping[str, bytes], report: PackReport) -> None:
    try:
        period = _load(files, "period.json")
        expected = _derived(files, str(period.get("profile", "")))
    except (KeyError, ValueError) as exc:
        report.problems.append(f"cannot recompute from trail/records.jsonl: {exc}")
        return
    for target, want in expected.items():
        name, _, part = target.partition("#")
        if name not in files:
            continue  # already reported as removed
        if isinstance(want, bytes):
            same = files[name] == want
        else:
            try:
                have = _load(files, name)
            except ValueError:
                same = False
            else:
                same = (have.get(part) if part and isinstance(have, dict) else have) == want
        if not same:
            report.problems.append(f"{name}{' (' + part + ')' if part else ''}: does not match the trail "
                                   "records in the pack")


def _check_signature(files: Mapping[str, bytes], signer: str | None, report: PackReport) -> None:
    """``manifest.sig.json`` (an operator's key, evidence/signing.py), when the pack has one."""
    if signing.SIGNATURE not in files:
        if signer is not None:
            report.problems.append(f"{signing.SIGNATURE}: missing (--signer given)")
        return
    try:
        sig = _load(files, signing.SIGNATURE)
    except ValueError as exc:
        report.problems.append(f"{signing.SIGNATURE}: unreadable ({exc})")
        return
    why = signing.check_signature(files[MANIFEST], sig)
    if why is not None:
        report.problems.append(f"{MANIFEST if why.startswith('signature') else signing.SIGNATURE}: {why}")
    elif signer is not None and signer.strip().lower() != sig.get("signer_spki_sha256"):
        report.problems.append(f"{signing.SIGNATURE}: signed by key {sig.get('signer_spki_sha256')}, "
                               f"not {signer}")
    else:
        report.notes.append(f"manifest signed ({sig.get('algorithm')}) by key SHA-256 "
                            f"{sig.get('signer_spki_sha256')}"
                            + ("" if signer else " (pin it with --signer)"))


def _check_records(recs: list[Record], key: bytes | None, period: Mapping[str, Any], where: str,
                   report: PackReport) -> None:
    """One piece of a trail's hash chain: its seals with ``key`` (from the period's anchor), its length."""
    if key is not None and recs:
        anchor = period.get("anchor")
        result = verify_records(recs, key, start_seq=int(period.get("first_seq") or recs[0].seq),
                                prev=bytes.fromhex(anchor) if isinstance(anchor, str) else None)
        report.checked_records += result.checked
        if result.finding is not None:
            report.problems.append(f"{where}: seq {result.finding.seq}: {result.finding.reason} "
                                   "(the trail was tampered with before the pack was made, or the file "
                                   "since)")
    if len(recs) != int(period.get("records", len(recs))):
        report.problems.append(f"{where}: {len(recs)} records, the manifest says {period.get('records')}")


def _check_cas(files: Mapping[str, bytes], ca_keys: Mapping[str, bytes], report: PackReport) -> None:
    """Each CA's records (with its trail's key when given) and the files derived from them (ca.py)."""
    for name in ca.names_in(files):
        prefix = f"ca/{name}/"
        try:
            period = _load(files, f"{prefix}period.json")
            recs = ca.records_in(files, name)
        except (KeyError, ValueError) as exc:
            report.problems.append(f"{prefix}: unreadable ({exc})")
            continue
        key = ca_keys.get(name)
        if key is None:
            report.notes.append(f"CA {name}: no verification key given (--ca-key {name}=FILE): its trail "
                                "seals were NOT checked")
        elif period.get("trail_fingerprint") != fingerprint(key):
            report.problems.append(f"{prefix}records.jsonl: from CA trail {period.get('trail_fingerprint')}, "
                                   f"not {fingerprint(key)}")
            key = None
        _check_records(recs, key, period, f"{prefix}records.jsonl", report)
        for target, want in ca.derived_files(prefix, recs).items():
            if target in files and files[target] != want:
                report.problems.append(f"{target}: does not match the CA trail records in the pack")


def verify_pack(files: Mapping[str, bytes], key: bytes | None, signer: str | None = None,
                ca_keys: Mapping[str, bytes] | None = None) -> PackReport:
    """Check a pack's files (from ``pack.read``) with the trail's verification key (None: seals unchecked)
    and, when it is signed, the signature (``signer``: the SHA-256 of the signer's public key to require);
    ``ca_keys``: the verification keys of the CA trails in ``ca/NAME/`` by NAME."""
    report = PackReport()
    if MANIFEST not in files:
        report.problems.append(f"{MANIFEST}: missing: not an evidence pack, or the manifest was removed")
        return report
    try:
        man = _load(files, MANIFEST)
        listed = dict(man["files"])
    except (KeyError, ValueError, TypeError) as exc:
        report.problems.append(f"{MANIFEST}: unreadable ({exc})")
        return report
    _check_files(files, listed, report)
    _check_signature(files, signer, report)
    if SEAL not in files:
        report.problems.append(f"{SEAL}: removed")
    elif key is None:
        report.notes.append("no verification key given: the manifest seal and the trail seals were NOT "
                            "checked")
    else:
        _check_seal(files, key, report)
    if "trail/records.jsonl" in files:
        _check_records(records_of(files), key, man.get("period", {}), "trail/records.jsonl", report)
        _check_derived(files, report)
    _check_cas(files, ca_keys or {}, report)
    return report
