"""AUTH payload signatures: RFC 7427 Digital Signature (method 14), RFC 4754 ECDSA (9/10/11), RSA (1).

Method 14 AUTH data = one length octet || ASN.1 AlgorithmIdentifier (DER, the published constants of
RFC 7427 Appendix A / RFC 8420) || signature; ECDSA signatures there are DER ``ECDSA-Sig-Value``. RFC 4754
methods carry raw r || s. Also the SIGNATURE_HASH_ALGORITHMS notify data (RFC 7427 §4) and hash choice.

``verify_auth`` enforces policy before it verifies: the scheme must be in the caller's allowed set, and with
method 14 the hash must be one the verifier announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4: the
signer uses a hash the other end supports). Schemes have strongSwan's names (``ecdsa-sha384``,
``rsa/pss-sha384``, ``rsa-sha384`` for PKCS#1 v1.5, ``ed25519``) so profiles read like swanctl.conf.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ikeguard.crypto.errors import SignatureInvalid, UnsupportedSignatureAlgorithm
from ikeguard.crypto.pss_params import parse_pss_algorithm_identifier
from ikeguard.wire.iana import AuthMethod, HashAlgorithm, lookup

PrivateKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
)
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

# RFC 7427 Appendix A (and RFC 8420 §2 for EdDSA): DER AlgorithmIdentifier values, byte for byte.
AID_SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")  # A.1.1
AID_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")  # A.1.2
AID_SHA384_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010c0500")  # A.1.3
AID_SHA512_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010d0500")  # A.1.4
AID_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")  # A.3.2
AID_ECDSA_SHA384 = bytes.fromhex("300a06082a8648ce3d040303")  # A.3.3
AID_ECDSA_SHA512 = bytes.fromhex("300a06082a8648ce3d040304")  # A.3.4
# A.4.3 RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt 32); the SHA-384/512 forms differ only in the hash
# OID (2.16.840.1.101.3.4.2.2 / .3) and the salt length (48 / 64), as strongSwan and libreswan send them.
AID_RSA_PSS_SHA256 = bytes.fromhex(
    "3041" "06092a864886f70d01010a" "3034"
    "a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500"
    "a203020120"
)  # fmt: skip
AID_RSA_PSS_SHA384 = bytes.fromhex(
    "3041" "06092a864886f70d01010a" "3034"
    "a00f300d06096086480165030402020500"
    "a11c301a06092a864886f70d010108300d06096086480165030402020500"
    "a203020130"
)  # fmt: skip
AID_RSA_PSS_SHA512 = bytes.fromhex(
    "3041" "06092a864886f70d01010a" "3034"
    "a00f300d06096086480165030402030500"
    "a11c301a06092a864886f70d010108300d06096086480165030402030500"
    "a203020140"
)  # fmt: skip
AID_ED25519 = bytes.fromhex("300506032b6570")  # RFC 8420 §2 / RFC 8410
AID_ED448 = bytes.fromhex("300506032b6571")


@dataclass(frozen=True)
class _SchemeInfo:
    key_type: str  # "rsa" | "ec" | "ed25519" | "ed448"
    hash: HashAlgorithm
    algorithm_identifier: bytes
    pss: bool = False


class SignatureScheme(Enum):
    """A signature algorithm usable in AUTH, with its RFC 7427 AlgorithmIdentifier."""

    RSA_PKCS1_SHA1 = _SchemeInfo("rsa", HashAlgorithm.SHA1, AID_SHA1_WITH_RSA)
    RSA_PKCS1_SHA256 = _SchemeInfo("rsa", HashAlgorithm.SHA2_256, AID_SHA256_WITH_RSA)
    RSA_PKCS1_SHA384 = _SchemeInfo("rsa", HashAlgorithm.SHA2_384, AID_SHA384_WITH_RSA)
    RSA_PKCS1_SHA512 = _SchemeInfo("rsa", HashAlgorithm.SHA2_512, AID_SHA512_WITH_RSA)
    RSA_PSS_SHA256 = _SchemeInfo("rsa", HashAlgorithm.SHA2_256, AID_RSA_PSS_SHA256, pss=True)
    RSA_PSS_SHA384 = _SchemeInfo("rsa", HashAlgorithm.SHA2_384, AID_RSA_PSS_SHA384, pss=True)
    RSA_PSS_SHA512 = _SchemeInfo("rsa", HashAlgorithm.SHA2_512, AID_RSA_PSS_SHA512, pss=True)
    ECDSA_SHA256 = _SchemeInfo("ec", HashAlgorithm.SHA2_256, AID_ECDSA_SHA256)
    ECDSA_SHA384 = _SchemeInfo("ec", HashAlgorithm.SHA2_384, AID_ECDSA_SHA384)
    ECDSA_SHA512 = _SchemeInfo("ec", HashAlgorithm.SHA2_512, AID_ECDSA_SHA512)
    ED25519 = _SchemeInfo("ed25519", HashAlgorithm.IDENTITY, AID_ED25519)
    ED448 = _SchemeInfo("ed448", HashAlgorithm.IDENTITY, AID_ED448)

    @property
    def info(self) -> _SchemeInfo:
        """Key type, hash and AlgorithmIdentifier of this scheme."""
        value: _SchemeInfo = self.value
        return value

    @property
    def token(self) -> str:
        """strongSwan's name of the scheme (swanctl.conf ``auth = pubkey-...`` / ``rsa/pss-...``)."""
        return _TOKENS[self]


_HASH_TOKENS = {HashAlgorithm.SHA1: "sha1", HashAlgorithm.SHA2_256: "sha256",
                HashAlgorithm.SHA2_384: "sha384", HashAlgorithm.SHA2_512: "sha512"}  # fmt: skip


def _token(scheme: SignatureScheme) -> str:
    info = scheme.info
    if info.key_type in ("ed25519", "ed448"):
        return info.key_type
    prefix = {"rsa": "rsa/pss" if info.pss else "rsa", "ec": "ecdsa"}[info.key_type]
    return f"{prefix}-{_HASH_TOKENS[info.hash]}"


_TOKENS = {s: _token(s) for s in SignatureScheme}
_BY_TOKEN = {t: s for s, t in _TOKENS.items()}


def _hash_name(value: int) -> str:
    found = lookup(HashAlgorithm, int(value))
    return found.name if isinstance(found, HashAlgorithm) else str(int(value))


def scheme_by_name(name: str) -> SignatureScheme:
    """The scheme for a strongSwan-style name (``ecdsa-sha384``, ``rsa/pss-sha256``, ``rsa-sha384``,
    ``ed25519``); ValueError listing the known names otherwise."""
    scheme = _BY_TOKEN.get(name.strip().lower())
    if scheme is None:
        raise ValueError(f"unknown signature scheme {name!r}; known: {', '.join(_BY_TOKEN)}")
    return scheme


_BY_AID = {s.info.algorithm_identifier: s for s in SignatureScheme}
_HASH_CLS: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA1: hashes.SHA1,
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}
# RFC 4754 §3: fixed curve + hash per method; r and s each as wide as the curve order
_RFC4754 = {
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", SignatureScheme.ECDSA_SHA256, 32),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", SignatureScheme.ECDSA_SHA384, 48),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", SignatureScheme.ECDSA_SHA512, 66),
}


def _key_type(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "ed448"
    raise UnsupportedSignatureAlgorithm(f"key type {type(key).__name__} not supported")


def _pss(hash_alg: HashAlgorithm, salt_len: int | None = None) -> padding.PSS:
    h = _HASH_CLS[hash_alg]()
    return padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size if salt_len is None else salt_len)


def _sign_raw(key: PrivateKey, scheme: SignatureScheme, data: bytes) -> bytes:
    info = scheme.info
    if _key_type(key) != info.key_type:
        raise UnsupportedSignatureAlgorithm(f"{scheme.name} needs a {info.key_type} key")
    if isinstance(key, rsa.RSAPrivateKey):
        pad = _pss(info.hash) if info.pss else padding.PKCS1v15()
        return key.sign(data, pad, _HASH_CLS[info.hash]())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(_HASH_CLS[info.hash]()))
    return key.sign(data)  # EdDSA signs the octets themselves (RFC 8420 "identity" hash)


def _verify_raw(
    key: PublicKey, scheme: SignatureScheme, signature: bytes, data: bytes, pss_salt: int | None = None
) -> None:
    info = scheme.info
    if _key_type(key) != info.key_type:
        raise UnsupportedSignatureAlgorithm(f"{scheme.name} does not match the peer's {_key_type(key)} key")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad = _pss(info.hash, pss_salt) if info.pss else padding.PKCS1v15()
            key.verify(signature, data, pad, _HASH_CLS[info.hash]())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_HASH_CLS[info.hash]()))
        else:
            key.verify(signature, data)
    except InvalidSignature:
        raise SignatureInvalid(f"{scheme.name} signature does not verify") from None
    except ValueError:  # e.g. a DER ECDSA signature that does not parse
        raise SignatureInvalid(f"{scheme.name} signature is malformed") from None


def scheme_for(key: PrivateKey | PublicKey, hash_alg: HashAlgorithm, rsa_pss: bool = True) -> SignatureScheme:
    """The RFC 7427 scheme for a key and a negotiated hash (RSA: PSS unless ``rsa_pss`` is False)."""
    kind = _key_type(key)
    for scheme in SignatureScheme:
        info = scheme.info
        if info.key_type == kind and info.hash == hash_alg and (kind != "rsa" or info.pss == rsa_pss):
            return scheme
    raise UnsupportedSignatureAlgorithm(f"no {kind} signature scheme with hash {hash_alg.name}")


def sign_auth(
    key: PrivateKey,
    signed_octets: bytes,
    method: AuthMethod = AuthMethod.DIGITAL_SIGNATURE,
    scheme: SignatureScheme | None = None,
) -> bytes:
    """AUTH data for ``method`` over the signed octets (RFC 7296 §2.15).

    Method 14 needs ``scheme``; methods 9/10/11 produce r || s (RFC 4754 §3); method 1 is not produced.
    """
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if scheme is None:
            raise UnsupportedSignatureAlgorithm("method 14 needs a signature scheme")
        if scheme is SignatureScheme.RSA_PKCS1_SHA1:
            raise UnsupportedSignatureAlgorithm("SHA-1 signatures are never produced")
        aid = scheme.info.algorithm_identifier
        return bytes([len(aid)]) + aid + _sign_raw(key, scheme, signed_octets)
    if method in _RFC4754:
        curve, ec_scheme, width = _RFC4754[AuthMethod(method)]
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != curve:
            raise UnsupportedSignatureAlgorithm(f"{AuthMethod(method).name} needs a {curve} key")
        r, s = decode_dss_signature(_sign_raw(key, ec_scheme, signed_octets))
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")
    raise UnsupportedSignatureAlgorithm(f"AUTH method {int(method)} cannot be signed here")


def verify_auth(
    key: PublicKey,
    method: int,
    auth_data: bytes,
    signed_octets: bytes,
    allowed: Collection[SignatureScheme] | None = None,
    allow_sha1: bool = False,
    announced: Collection[int] | None = None,
) -> SignatureScheme:
    """Verify the peer's AUTH data; returns the scheme used or raises SignatureInvalid/Unsupported...

    ``allowed`` restricts the schemes (policy); SHA-1 (method 1 or sha1WithRSA) needs ``allow_sha1``;
    ``announced``: the hashes we sent in SIGNATURE_HASH_ALGORITHMS, the only ones a method 14 signature may
    use (RFC 7427 §4). Policy is checked before any signature arithmetic.
    """
    pss_salt: int | None = None
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if not auth_data or len(auth_data) < 1 + auth_data[0]:
            raise SignatureInvalid("AUTH data shorter than its AlgorithmIdentifier")
        aid = bytes(auth_data[1 : 1 + auth_data[0]])
        found = _BY_AID.get(aid)
        if found is None:  # another encoding of RSASSA-PSS parameters (e.g. a different salt length)
            pss = parse_pss_algorithm_identifier(aid)
            if pss is None:
                raise UnsupportedSignatureAlgorithm(f"unknown AlgorithmIdentifier {aid.hex()}")
            found = scheme_for(key, pss[0], rsa_pss=True)
            pss_salt = pss[1]
        scheme, signature = found, bytes(auth_data[1 + auth_data[0] :])
    elif method in _RFC4754:
        curve, scheme, width = _RFC4754[AuthMethod(method)]
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise UnsupportedSignatureAlgorithm(f"{AuthMethod(method).name} needs a {curve} key")
        if len(auth_data) != 2 * width:
            raise SignatureInvalid(f"{AuthMethod(method).name} signature must be {2 * width} octets")
        r = int.from_bytes(auth_data[:width], "big")
        s = int.from_bytes(auth_data[width:], "big")
        signature = encode_dss_signature(r, s)
    elif method == AuthMethod.RSA_SIG:
        scheme, signature = SignatureScheme.RSA_PKCS1_SHA1, bytes(auth_data)
    else:
        raise UnsupportedSignatureAlgorithm(f"AUTH method {method} is not a signature method")
    if scheme.info.hash == HashAlgorithm.SHA1 and not allow_sha1:
        raise UnsupportedSignatureAlgorithm("SHA-1 signatures are not allowed")
    if allowed is not None and scheme not in allowed:
        names = ", ".join(s.token for s in SignatureScheme if s in allowed) or "none"
        raise UnsupportedSignatureAlgorithm(
            f"{scheme.token} (AUTH method {int(method)}) is not allowed by policy (allowed: {names})"
        )
    if method == AuthMethod.DIGITAL_SIGNATURE and announced is not None and scheme.info.hash not in announced:
        names = ", ".join(_hash_name(h) for h in announced)
        raise UnsupportedSignatureAlgorithm(
            f"{scheme.token} uses hash {scheme.info.hash.name}, which we did not announce in "
            f"SIGNATURE_HASH_ALGORITHMS ({names}) (RFC 7427 §4)"
        )
    _verify_raw(key, scheme, signature, bytes(signed_octets), pss_salt)
    return scheme


# --------------------------------------------------------------------------- RFC 7427 §4 notify data
def encode_signature_hash_algorithms(algorithms: Iterable[int]) -> bytes:
    """SIGNATURE_HASH_ALGORITHMS notify data: a list of 2-octet hash identifiers."""
    out = bytearray()
    for alg in algorithms:
        if not 0 <= int(alg) <= 0xFFFF:
            raise ValueError("hash algorithm identifier out of range")
        out += int(alg).to_bytes(2, "big")
    return bytes(out)


def decode_signature_hash_algorithms(data: bytes) -> tuple[HashAlgorithm | int, ...]:
    """Parse the notify data; unknown identifiers are kept as ints. Odd length raises ValueError."""
    if len(data) % 2:
        raise ValueError("SIGNATURE_HASH_ALGORITHMS data must be a multiple of 2 octets")
    values = (int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    return tuple(lookup(HashAlgorithm, v) for v in values)


_EC_PREFERRED = {"secp256r1": HashAlgorithm.SHA2_256, "secp384r1": HashAlgorithm.SHA2_384,
                 "secp521r1": HashAlgorithm.SHA2_512}  # fmt: skip


def select_hash(key: PrivateKey | PublicKey, ours: Sequence[int], theirs: Collection[int]) -> HashAlgorithm:
    """The hash to sign with: EdDSA needs IDENTITY; ECDSA prefers its curve's hash; else our order."""
    kind = _key_type(key)
    common = [HashAlgorithm(h) for h in ours if h in theirs and h in HashAlgorithm.__members__.values()]
    if kind in ("ed25519", "ed448"):
        if HashAlgorithm.IDENTITY in common:
            return HashAlgorithm.IDENTITY
        raise UnsupportedSignatureAlgorithm("peer does not accept the identity hash needed for EdDSA")
    usable = [h for h in common if h not in (HashAlgorithm.IDENTITY, HashAlgorithm.SHA1)]
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        preferred = _EC_PREFERRED.get(key.curve.name)
        if preferred in usable:
            return preferred
    if not usable:
        raise UnsupportedSignatureAlgorithm("no common SHA-2 hash for signatures")
    return usable[0]
