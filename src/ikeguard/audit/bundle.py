"""Sealed export bundles and archive files (pure): records + per-record seals + a bundle seal + the anchor.

A bundle holds records ``from_seq..to_seq`` exactly as stored, the chain hash before the first one (anchor),
the verification-key fingerprint, and ``seal = HMAC(k_N, "bundle" || digest)`` where ``N`` is the sequence
number of the ``audit.exported``/``audit.archived`` record appended with it.
Dropping, adding or changing a record in the file breaks the digest; re-sealing needs ``k_N``, long erased.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ikeguard.audit.chain import (
    Finding,
    Record,
    VerifyReport,
    bundle_seal,
    fingerprint,
    key_at,
    mac_equal,
    sha256,
    verify_records,
)

FORMAT = "ikeguard-audit-bundle/1"


class BundleError(ValueError):
    """A file that is not a well-formed bundle."""


def _digest(head: Mapping[str, object], records: Sequence[Mapping[str, object]]) -> bytes:
    text = json.dumps({"head": head, "records": list(records)}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return sha256(text.encode("utf-8"))


def bundle_head(kind: str, records: Sequence[Record], fpr: str, sealed_by: int) -> dict[str, object]:
    """The bundle header the digest covers."""
    return {"format": FORMAT, "kind": kind, "fingerprint": fpr, "sealed_by_seq": sealed_by,
            "from_seq": records[0].seq if records else None, "to_seq": records[-1].seq if records else None,
            "anchor": records[0].prev.hex() if records else None}


def digest_of(kind: str, records: Sequence[Record], fpr: str, sealed_by: int) -> bytes:
    """Digest a bundle's seal covers."""
    return _digest(bundle_head(kind, records, fpr, sealed_by), [r.to_json() for r in records])


def build(kind: str, records: Sequence[Record], fpr: str, sealed_by: int, key: bytes) -> dict[str, object]:
    """A sealed bundle; ``key`` is the sealing key of record ``sealed_by``."""
    head = bundle_head(kind, records, fpr, sealed_by)
    entries = [r.to_json() for r in records]
    digest = _digest(head, entries)
    return {**head, "records": entries, "digest": digest.hex(), "seal": bundle_seal(key, digest).hex()}


def parse(text: str | bytes) -> dict[str, object]:
    """Load a bundle file's JSON (``BundleError`` when it is not one)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"not an {FORMAT} file")
    return data


def verify(data: Mapping[str, object], verification_key: bytes) -> VerifyReport:
    """Verify a bundle: fingerprint, each record (chain + per-position seal), then the bundle seal."""
    fpr = fingerprint(verification_key)
    if data.get("fingerprint") != fpr:
        report = VerifyReport()
        report.finding = Finding(0, f"bundle made for key {data.get('fingerprint')}, not {fpr}")
        return report
    raw = data.get("records")
    if not isinstance(raw, list):
        raise BundleError("records missing")
    try:
        records = [Record.from_json(e) for e in raw]
        from_seq = int(str(data["from_seq"])) if records else 0
        sealed_by = int(str(data["sealed_by_seq"]))
        kind = str(data["kind"])
        seal_hex = bytes.fromhex(str(data["seal"]))
    except (KeyError, ValueError) as exc:
        raise BundleError(f"malformed bundle: {exc}") from exc
    if not records:
        return VerifyReport()
    anchor = data.get("anchor")
    report = verify_records(records, verification_key, start_seq=from_seq,
                            prev=bytes.fromhex(str(anchor)) if isinstance(anchor, str) else None)
    if not report.ok:
        return report
    expected = bundle_seal(key_at(verification_key, 1, sealed_by), digest_of(kind, records, fpr, sealed_by))
    if data.get("to_seq") != records[-1].seq or not mac_equal(expected, seal_hex):
        report.finding = Finding(records[-1].seq, "bundle seal invalid: records were dropped, added or the "
                                                  "bundle was re-sealed")
    return report
