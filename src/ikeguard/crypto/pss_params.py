"""Reading RSASSA-PSS AlgorithmIdentifier parameters (RFC 4055 §3.1) from a peer's AUTH data (RFC 7427 §3).

Written by hand because `cryptography` has no public DER reader for AlgorithmIdentifiers. It only walks
the fixed PSS structure with strict bounds checks; any deviation returns None (= unsupported algorithm).
SHA-1 (the RFC 4055 default hash) is not accepted: the hash must be SHA-256/384/512 with MGF1 of the same.
"""

from __future__ import annotations

from ikeguard.wire.iana import HashAlgorithm

OID_RSASSA_PSS = bytes.fromhex("06092a864886f70d01010a")
OID_MGF1 = bytes.fromhex("06092a864886f70d010108")
_HASH_OIDS = {
    bytes.fromhex("0609608648016503040201"): HashAlgorithm.SHA2_256,
    bytes.fromhex("0609608648016503040202"): HashAlgorithm.SHA2_384,
    bytes.fromhex("0609608648016503040203"): HashAlgorithm.SHA2_512,
}
_NULL = b"\x05\x00"


class _DerError(ValueError):
    pass


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, contents start, contents end) of the DER element at ``pos``; definite lengths only."""
    if pos + 2 > end:
        raise _DerError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or pos + n > end:
            raise _DerError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise _DerError("truncated")
    return tag, pos, pos + length


def _hash_aid(data: bytes, start: int, end: int) -> HashAlgorithm:
    """hashAlgorithm ::= SEQUENCE { OID [, NULL] } for a SHA-2 hash."""
    tag, s, e = _tlv(data, start, end)
    if tag != 0x30 or e != end:
        raise _DerError("hash AlgorithmIdentifier")
    _, _, oe = _tlv(data, s, e)
    oid = data[s:oe]
    if oid not in _HASH_OIDS or data[oe:e] not in (b"", _NULL):
        raise _DerError("hash")
    return _HASH_OIDS[oid]


def parse_pss_algorithm_identifier(aid: bytes) -> tuple[HashAlgorithm, int] | None:
    """(hash, salt length) of an RSASSA-PSS AlgorithmIdentifier, or None if it is not one we accept."""
    try:
        tag, s, e = _tlv(aid, 0, len(aid))
        if tag != 0x30 or e != len(aid) or aid[s : s + len(OID_RSASSA_PSS)] != OID_RSASSA_PSS:
            return None
        tag, pos, params_end = _tlv(aid, s + len(OID_RSASSA_PSS), e)
        if tag != 0x30 or params_end != e:
            return None
        fields: dict[int, tuple[int, int]] = {}
        while pos < params_end:
            tag, cs, ce = _tlv(aid, pos, params_end)
            if tag not in (0xA0, 0xA1, 0xA2, 0xA3) or tag in fields:
                return None
            fields[tag] = (cs, ce)
            pos = ce
        if 0xA0 not in fields or 0xA1 not in fields:  # the SHA-1 defaults are not accepted
            return None
        hash_alg = _hash_aid(aid, *fields[0xA0])
        tag, ms, me = _tlv(aid, *fields[0xA1])
        if tag != 0x30 or me != fields[0xA1][1] or aid[ms : ms + len(OID_MGF1)] != OID_MGF1:
            return None
        if _hash_aid(aid, ms + len(OID_MGF1), me) != hash_alg:
            return None
        salt = 20  # RFC 4055 default
        if 0xA2 in fields:
            tag, ss, se = _tlv(aid, *fields[0xA2])
            if tag != 0x02 or se != fields[0xA2][1] or not 1 <= se - ss <= 2 or aid[ss] & 0x80:
                return None
            salt = int.from_bytes(aid[ss:se], "big")
        if 0xA3 in fields and aid[fields[0xA3][0] : fields[0xA3][1]] != b"\x02\x01\x01":
            return None  # trailerField must be 1 (trailerFieldBC)
        return hash_alg, salt
    except _DerError:
        return None
