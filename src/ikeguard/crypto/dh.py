"""IKEv2 key exchange methods over pyca/cryptography, with validation of the peer's KE data.

ECP groups 19/20/21 (RFC 5903: KE data = x || y, shared secret = x only), Curve25519/448 groups 31/32
(RFC 8031), MODP 14/15/16 (RFC 3526; legacy interop only, behind :class:`FiniteFieldDhBackend`), the
legacy ECP groups 25/26 (RFC 5114) and, when the installed `cryptography` supports them, ML-KEM-768/1024
(:mod:`ikeguard.crypto.mlkem`).
Every rejection of the peer's value raises :class:`InvalidKeyExchange` with a named reason.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.utils import CryptographyDeprecationWarning

from ikeguard.crypto.errors import InvalidKeyExchange, UnsupportedTransform
from ikeguard.crypto.mlkem import MLKEM_PARAMS, MlKemKeyExchange, mlkem_methods
from ikeguard.crypto.random import RandomSource, SystemRandom
from ikeguard.wire.iana import KeId


class KeRejection(StrEnum):
    """Named reasons for rejecting a peer's KE data (carried in ``InvalidKeyExchange.reason``)."""

    WRONG_LENGTH = "wrong length"
    IDENTITY = "identity element (point at infinity)"
    OFF_CURVE = "point not on the curve"
    LOW_ORDER = "low-order point (all-zero shared secret)"
    OUT_OF_RANGE = "value not in [2, p-2]"
    INVALID_ENCODING = "invalid encoding"


class KeyExchange(ABC):
    """One side of one key exchange; ephemeral, used once (RFC 7296 §1.2, RFC 9370 §2.2.2)."""

    method: KeId

    @property
    @abstractmethod
    def public_value(self) -> bytes:
        """Our KE payload data (initiator role, or a DH responder)."""

    @abstractmethod
    def shared_secret(self, peer_ke_data: bytes) -> bytes:
        """Validate the peer's KE data and return the shared secret g^ir (initiator side for a KEM)."""

    def respond(self, peer_ke_data: bytes) -> tuple[bytes, bytes]:
        """Responder side: return (our KE data, shared secret) for the initiator's KE data."""
        shared = self.shared_secret(peer_ke_data)
        return self.public_value, shared

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method.name})"


def _reject(reason: KeRejection, method: KeId) -> InvalidKeyExchange:
    return InvalidKeyExchange(f"{method.name}: {reason.value}")


# --------------------------------------------------------------------------- ECP (RFC 5903)
_EC_CURVES: dict[KeId, ec.EllipticCurve] = {
    KeId.ECP_256: ec.SECP256R1(),
    KeId.ECP_384: ec.SECP384R1(),
    KeId.ECP_521: ec.SECP521R1(),
    KeId.ECP_192: ec.SECP192R1(),
    KeId.ECP_224: ec.SECP224R1(),
}


class EcpKeyExchange(KeyExchange):
    """NIST prime-curve ECDH; KE data is x || y, each coordinate left-padded (RFC 5903 §7)."""

    def __init__(self, method: KeId, rng: RandomSource | None = None, private_value: int | None = None):
        self.method = method
        self._curve = _EC_CURVES[method]
        self.coordinate_len = (self._curve.key_size + 7) // 8
        if private_value is not None:
            self._private = ec.derive_private_key(private_value, self._curve)
        elif rng is not None and not isinstance(rng, SystemRandom):
            self._private = self._from_rng(rng)  # injected stream (tests): reproducible scalars
        else:  # the OS CSPRNG either way: OpenSSL draws the scalar ~2.5x faster than derive_private_key
            self._private = ec.generate_private_key(self._curve)
        numbers = self._private.public_key().public_numbers()
        n = self.coordinate_len
        self._public = numbers.x.to_bytes(n, "big") + numbers.y.to_bytes(n, "big")

    def _from_rng(self, rng: RandomSource) -> ec.EllipticCurvePrivateKey:
        bits = self._curve.key_size
        while True:
            scalar = int.from_bytes(rng.bytes(self.coordinate_len), "big") & ((1 << bits) - 1)
            if scalar == 0:
                continue
            try:
                return ec.derive_private_key(scalar, self._curve)
            except ValueError:  # scalar >= group order: draw again
                continue

    @property
    def public_value(self) -> bytes:
        return self._public

    def peer_public_key(self, peer_ke_data: bytes) -> ec.EllipticCurvePublicKey:
        """Validate x || y and return it as a public key (RFC 5903 §9: on-curve, not infinity)."""
        if len(peer_ke_data) != 2 * self.coordinate_len:
            raise _reject(KeRejection.WRONG_LENGTH, self.method)
        if not any(peer_ke_data):
            raise _reject(KeRejection.IDENTITY, self.method)
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer_ke_data)
        except ValueError:
            raise _reject(KeRejection.OFF_CURVE, self.method) from None

    def shared_secret(self, peer_ke_data: bytes) -> bytes:
        peer = self.peer_public_key(peer_ke_data)
        return self._private.exchange(ec.ECDH(), peer)  # x coordinate only, fixed length (RFC 5903 §7)


# --------------------------------------------------------------------------- X25519 / X448 (RFC 8031)
class MontgomeryKeyExchange(KeyExchange):
    """X25519 (group 31) and X448 (group 32); KE data is the raw u-coordinate (RFC 8031 §2)."""

    def __init__(self, method: KeId, rng: RandomSource | None = None, private_bytes: bytes | None = None):
        self.method = method
        self.key_len = 32 if method == KeId.CURVE25519 else 56
        if private_bytes is None and rng is not None:
            private_bytes = rng.bytes(self.key_len)
        self._private: x25519.X25519PrivateKey | x448.X448PrivateKey
        if method == KeId.CURVE25519:
            self._private = (
                x25519.X25519PrivateKey.from_private_bytes(private_bytes)
                if private_bytes is not None
                else x25519.X25519PrivateKey.generate()
            )
        else:
            self._private = (
                x448.X448PrivateKey.from_private_bytes(private_bytes)
                if private_bytes is not None
                else x448.X448PrivateKey.generate()
            )
        self._public = self._private.public_key().public_bytes_raw()

    @property
    def public_value(self) -> bytes:
        return self._public

    def shared_secret(self, peer_ke_data: bytes) -> bytes:
        if len(peer_ke_data) != self.key_len:
            raise _reject(KeRejection.WRONG_LENGTH, self.method)
        try:
            if isinstance(self._private, x25519.X25519PrivateKey):
                shared = self._private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_ke_data))
            else:
                shared = self._private.exchange(x448.X448PublicKey.from_public_bytes(peer_ke_data))
        except ValueError:  # the library refuses an all-zero result (RFC 7748 §6.1 check)
            raise _reject(KeRejection.LOW_ORDER, self.method) from None
        if not any(shared):  # RFC 8031 §2.3: MUST check for the all-zero value
            raise _reject(KeRejection.LOW_ORDER, self.method)
        return shared


# --------------------------------------------------------------------------- MODP (RFC 3526), legacy
_RFC3526_PRIME_HEX = {
    2048: "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    3072: "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    4096: "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
}
MODP_PRIMES: dict[KeId, int] = {
    KeId.MODP_2048: int(_RFC3526_PRIME_HEX[2048], 16),
    KeId.MODP_3072: int(_RFC3526_PRIME_HEX[3072], 16),
    KeId.MODP_4096: int(_RFC3526_PRIME_HEX[4096], 16),
}
MODP_GENERATOR = 2  # RFC 3526 §3-5


class FiniteFieldDhBackend:
    """The single adapter to a finite-field DH implementation (today pyca/cryptography's ``dh``).

    `cryptography` 50 deprecates FFDH; the warning is silenced only inside this class because these
    groups exist solely for legacy interop and the swap to another vetted implementation happens here.
    No modular arithmetic is done by us.
    """

    def __init__(self, prime: int, generator: int) -> None:
        self.prime = prime
        self.prime_len = (prime.bit_length() + 7) // 8
        with self._quiet():
            from cryptography.hazmat.primitives.asymmetric import dh

            self._dh: Any = dh
            self._parameters = dh.DHParameterNumbers(prime, generator).parameters()

    @staticmethod
    @contextmanager
    def _quiet() -> Iterator[None]:
        """Silence only the FFDH deprecation warning, only for calls into the library."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            yield

    def generate(self) -> tuple[Any, int]:
        """A fresh private key and its public value g^x mod p."""
        with self._quiet():
            private = self._parameters.generate_private_key()
            return private, private.public_key().public_numbers().y

    def exchange(self, private: Any, peer_value: int) -> bytes:
        """g^xy mod p left-padded to the prime's length (RFC 7296 §2.14)."""
        with self._quiet():
            pn = self._parameters.parameter_numbers()
            peer = self._dh.DHPublicNumbers(peer_value, pn).public_key()
            shared: bytes = private.exchange(peer)
        return shared.rjust(self.prime_len, b"\x00")


_FFDH_BACKENDS: dict[KeId, FiniteFieldDhBackend] = {}


def _ffdh_backend(method: KeId) -> FiniteFieldDhBackend:
    backend = _FFDH_BACKENDS.get(method)
    if backend is None:
        backend = _FFDH_BACKENDS[method] = FiniteFieldDhBackend(MODP_PRIMES[method], MODP_GENERATOR)
    return backend


class ModpKeyExchange(KeyExchange):
    """RFC 3526 MODP groups 14/15/16 — legacy interop only. Private keys come from the library RNG."""

    def __init__(self, method: KeId, rng: RandomSource | None = None) -> None:
        self.method = method
        self._backend = _ffdh_backend(method)
        self._private, y = self._backend.generate()
        self._public = y.to_bytes(self._backend.prime_len, "big")

    @property
    def public_value(self) -> bytes:
        return self._public

    def shared_secret(self, peer_ke_data: bytes) -> bytes:
        if len(peer_ke_data) != self._backend.prime_len:
            raise _reject(KeRejection.WRONG_LENGTH, self.method)
        y = int.from_bytes(peer_ke_data, "big")
        if not 2 <= y <= self._backend.prime - 2:  # RFC 6989 §2.2 (safe primes)
            raise _reject(KeRejection.OUT_OF_RANGE, self.method)
        return self._backend.exchange(self._private, y)


# --------------------------------------------------------------------------- ML-KEM (crypto.mlkem)
def mlkem_available() -> bool:
    """True when the installed `cryptography` and its OpenSSL provide ML-KEM-768."""
    return KeId.ML_KEM_768 in mlkem_methods()


class _MlKemExchange(MlKemKeyExchange, KeyExchange):
    """crypto.mlkem's ML-KEM exchange under this module's KeyExchange interface."""

    method: KeId

    def __repr__(self) -> str:
        return MlKemKeyExchange.__repr__(self)


# --------------------------------------------------------------------------- group table
@dataclass(frozen=True)
class KeMethodInfo:
    """Static facts about one key exchange method (Transform Type 4)."""

    method: KeId
    name: str
    kind: str  # "ecp" | "ecx" | "modp" | "kem"
    initiator_len: int
    responder_len: int
    shared_len: int
    security_bits: int
    legacy: bool = False
    notes: str = field(default="", compare=False)

    def create(self, rng: RandomSource | None = None) -> KeyExchange:
        """A fresh ephemeral key exchange; ``rng`` makes the private key reproducible (not for MODP)."""
        return new_key_exchange(self.method, rng)


KE_METHODS: dict[int, KeMethodInfo] = {
    m.method: m
    for m in (
        KeMethodInfo(KeId.ECP_256, "ecp256", "ecp", 64, 64, 32, 128),
        KeMethodInfo(KeId.ECP_384, "ecp384", "ecp", 96, 96, 48, 192),
        KeMethodInfo(KeId.ECP_521, "ecp521", "ecp", 132, 132, 66, 256),
        KeMethodInfo(KeId.CURVE25519, "x25519", "ecx", 32, 32, 32, 128),
        KeMethodInfo(KeId.CURVE448, "x448", "ecx", 56, 56, 56, 224),
        KeMethodInfo(KeId.MODP_2048, "modp2048", "modp", 256, 256, 256, 112, legacy=True),
        KeMethodInfo(KeId.MODP_3072, "modp3072", "modp", 384, 384, 384, 128, legacy=True),
        KeMethodInfo(KeId.MODP_4096, "modp4096", "modp", 512, 512, 512, 152, legacy=True),
        KeMethodInfo(KeId.ECP_192, "ecp192", "ecp", 48, 48, 24, 96, legacy=True),
        KeMethodInfo(KeId.ECP_224, "ecp224", "ecp", 56, 56, 28, 112, legacy=True),
    )
}
for _method in mlkem_methods():
    _params = MLKEM_PARAMS[_method]
    KE_METHODS[_method] = KeMethodInfo(
        _method, _method.name.lower().replace("_", ""), "kem", _params.ek_len, _params.ct_len, 32,
        192 if _method == KeId.ML_KEM_768 else 256, notes="RFC 9370 additional key exchange",
    )


def new_key_exchange(method: KeId | int, rng: RandomSource | None = None) -> KeyExchange:
    """Create our side of a key exchange for ``method``; raises UnsupportedTransform if unknown."""
    info = KE_METHODS.get(method)
    if info is None:
        raise UnsupportedTransform(f"key exchange method {method} not supported")
    if info.kind == "ecp":
        return EcpKeyExchange(info.method, rng)
    if info.kind == "ecx":
        return MontgomeryKeyExchange(info.method, rng)
    if info.kind == "modp":
        return ModpKeyExchange(info.method, rng)
    return _MlKemExchange(info.method, rng)
