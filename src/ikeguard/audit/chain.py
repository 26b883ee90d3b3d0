"""Hash chain and forward-secure seals of the audit trail (pure: no IO, no clock).

Schneier-Kelsey secure audit log (docs/audit.md §3), built from ``cryptography``'s SHA-256 and HMAC:

* ``hash_n = SHA-256(hash_{n-1} || canonical(seq, time, body))`` with ``hash_0`` = 32 zero octets;
* ``seal_n = HMAC-SHA-256(k_n, "seal" || hash_n)``, where the sealing key evolves one-way per record,
  ``k_{n+1} = HMAC-SHA-256(k_n, "evolve")``, and the writer erases ``k_n`` once record ``n`` is on disk.

The verifier starts from ``k_1`` (the verification key the auditor received at initialisation) and derives
the key *for each position*; it never accepts a seal made with any other key. Someone who takes the gateway at
time ``m`` holds only ``k_m`` and cannot re-seal a changed record ``n < m`` (the lesson of CVE-2023-31439).
Written by hand (no library implements this log format); the primitives come from ``cryptography``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import constant_time, hashes, hmac

GENESIS = bytes(32)
KEY_LEN = 32
_EVOLVE = b"ikeguard-audit-v1 evolve"
_SEAL = b"ikeguard-audit-v1 seal"
_BUNDLE = b"ikeguard-audit-v1 bundle"
_FPR = b"ikeguard-audit-v1 fingerprint"


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def _mac(key: bytes, *parts: bytes) -> bytes:
    m = hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        m.update(part)
    return m.finalize()


def evolve(key: bytes) -> bytes:
    """The next sealing key; one-way, so the previous one cannot be recovered from it."""
    return _mac(key, _EVOLVE)


def key_at(initial: bytes, initial_seq: int, seq: int) -> bytes:
    """The sealing key of record ``seq``, derived forward from the key of record ``initial_seq``."""
    if seq < initial_seq:
        raise ValueError("sealing keys only evolve forward")
    key = initial
    for _ in range(seq - initial_seq):
        key = evolve(key)
    return key


def fingerprint(verification_key: bytes) -> str:
    """A short public fingerprint of the verification key (printed at initialisation)."""
    digest = sha256(_FPR + verification_key).hex()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


def canonical_body(body: Mapping[str, object]) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of an event body."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_record(seq: int, time: str, body: Mapping[str, object], body_json: str | None = None) -> bytes:
    """The octets the chain hash covers for one record: canonical JSON of ``{"body", "seq", "time"}``.

    ``body_json`` may pass ``canonical_body(body)`` already computed (same octets, one encoding fewer).
    """
    if body_json is None:
        body_json = canonical_body(body)
    return f'{{"body":{body_json},"seq":{int(seq)},"time":{json.dumps(time, ensure_ascii=False)}}}'.encode()


def chain_hash(
    prev: bytes, seq: int, time: str, body: Mapping[str, object], body_json: str | None = None
) -> bytes:
    """``hash_n = SHA-256(hash_{n-1} || canonical(record))``."""
    return sha256(prev + canonical_record(seq, time, body, body_json))


def seal(key: bytes, record_hash: bytes) -> bytes:
    """The forward-secure seal of one record: a MAC of its chain hash under that record's key."""
    return _mac(key, _SEAL, record_hash)


def bundle_seal(key: bytes, digest: bytes) -> bytes:
    """The seal of an export bundle (MAC of its digest, key of its ``audit.exported``)."""
    return _mac(key, _BUNDLE, digest)


def mac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return constant_time.bytes_eq(a, b)


@dataclass(frozen=True)
class Record:
    """One stored record: what the chain and the seal cover, plus both."""

    seq: int
    time: str
    body: Mapping[str, object]
    prev: bytes
    hash: bytes
    seal: bytes

    def to_json(self) -> dict[str, object]:
        """JSON form used in bundles and archives."""
        return {
            "seq": self.seq,
            "time": self.time,
            "body": dict(self.body),
            "prev": self.prev.hex(),
            "hash": self.hash.hex(),
            "seal": self.seal.hex(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Record:
        """Inverse of ``to_json`` (``ValueError`` on a malformed entry)."""
        try:
            body = data["body"]
            if not isinstance(body, Mapping):
                raise ValueError("body is not an object")
            return cls(
                int(str(data["seq"])),
                str(data["time"]),
                dict(body),
                bytes.fromhex(str(data["prev"])),
                bytes.fromhex(str(data["hash"])),
                bytes.fromhex(str(data["seal"])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed audit record: {exc}") from exc


@dataclass(frozen=True)
class Finding:
    """Why verification failed: the first bad sequence number and the reason."""

    seq: int
    reason: str


@dataclass
class VerifyReport:
    """Outcome of verifying a run of records."""

    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: bytes = GENESIS
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every record verified."""
        return self.finding is None


def verify_records(
    records: Iterable[Record],
    verification_key: bytes,
    *,
    start_seq: int = 1,
    prev: bytes | None = GENESIS,
    key_seq: int = 1,
) -> VerifyReport:
    """Verify records in order: sequence continuity, chain links, recomputed hashes and per-position seals.

    ``start_seq`` is the sequence number the run must begin with; ``prev`` the chain hash before it (``None``
    when unknown, e.g. an export that does not start at 1: the seal still authenticates the first record's
    ``prev``). ``verification_key`` is the sealing key of record ``key_seq`` (1 for the initial key).
    """
    report = VerifyReport()
    expected = start_seq
    key = key_at(verification_key, key_seq, start_seq)
    for rec in records:
        if report.first_seq is None:
            report.first_seq = rec.seq
        if rec.seq < expected:
            report.finding = Finding(rec.seq, f"out of order or duplicate (expected seq {expected})")
            return report
        if rec.seq > expected:
            missing = f"{expected}" if rec.seq == expected + 1 else f"{expected}..{rec.seq - 1}"
            report.finding = Finding(expected, f"record(s) {missing} missing (next present: {rec.seq})")
            return report
        if prev is not None and not mac_equal(rec.prev, prev):
            report.finding = Finding(rec.seq, "chain broken: prev is not the hash of the record before")
            return report
        recomputed = chain_hash(rec.prev, rec.seq, rec.time, rec.body)
        if not mac_equal(recomputed, rec.hash):
            report.finding = Finding(rec.seq, "content changed: hash does not match the record")
            return report
        if not mac_equal(seal(key, rec.hash), rec.seal):
            report.finding = Finding(
                rec.seq,
                "seal invalid: not made with this position's sealing key "
                "(record changed and re-chained, or inserted)",
            )
            return report
        prev = rec.hash
        report.last_hash = rec.hash
        report.last_seq = rec.seq
        report.checked += 1
        expected += 1
        key = evolve(key)
    return report


def iter_json_records(entries: Iterable[Mapping[str, object]]) -> Iterator[Record]:
    """Records from their JSON forms."""
    for entry in entries:
        yield Record.from_json(entry)
