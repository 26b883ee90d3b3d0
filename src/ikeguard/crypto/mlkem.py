"""ML-KEM-768 and ML-KEM-1024 (FIPS 203) as IKEv2 key exchange methods 36/37 (draft-ietf-ipsecme-ikev2-mlkem).

The KEM itself is pyca/cryptography's (OpenSSL >= 3.5); this module adds what IKEv2 asks of the two roles:

* the initiator sends its encapsulation key ek (1184 / 1568 octets) and decapsulates the responder's
  ciphertext after the FIPS 203 §7.3 ciphertext type check (exact length);
* the responder runs the FIPS 203 §7.2 encapsulation key checks before encapsulating: the type check (length
  384k + 32) and the modulus check ``ByteEncode12(ByteDecode12(ek[:384k])) == ek[:384k]``, i.e. every 12-bit
  coefficient is below q = 3329. OpenSSL also refuses such keys; the check is written out so the refusal has
  a named reason and does not depend on the backend.
* the shared secret is the 32-octet K, used unpadded in place of g^ir (RFC 9370 §2.2.2).

Each object is one ephemeral key pair, used for one exchange (the draft's §3: fresh keys per exchange).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ikeguard.crypto.errors import InvalidKeyExchange
from ikeguard.crypto.random import RandomSource
from ikeguard.wire.iana import KeId

__all__ = ["MLKEM_PARAMS", "MlKemKeyExchange", "MlKemParams", "check_encapsulation_key", "mlkem_methods"]

Q = 3329


@dataclass(frozen=True)
class MlKemParams:
    """Sizes of one ML-KEM parameter set (FIPS 203 Table 3)."""

    method: KeId
    k: int
    ek_len: int
    ct_len: int
    class_name: str  # pyca/cryptography private key class

    @property
    def name(self) -> str:
        return self.method.name


MLKEM_PARAMS: dict[int, MlKemParams] = {
    KeId.ML_KEM_768: MlKemParams(KeId.ML_KEM_768, 3, 1184, 1088, "MLKEM768PrivateKey"),
    KeId.ML_KEM_1024: MlKemParams(KeId.ML_KEM_1024, 4, 1568, 1568, "MLKEM1024PrivateKey"),
}


def _module() -> Any:
    from cryptography.hazmat.primitives.asymmetric import mlkem

    return mlkem


def mlkem_methods() -> tuple[KeId, ...]:
    """The ML-KEM methods the installed `cryptography` and its OpenSSL provide."""
    try:
        module = _module()
    except ImportError:
        return ()
    found = []
    for params in MLKEM_PARAMS.values():
        cls = getattr(module, params.class_name, None)
        if cls is None:
            continue
        try:
            cls.generate()
        except Exception:  # noqa: S112 - UnsupportedAlgorithm on an OpenSSL without ML-KEM: not offered
            continue
        found.append(params.method)
    return tuple(found)


def _reject(params: MlKemParams, reason: str) -> InvalidKeyExchange:
    return InvalidKeyExchange(f"{params.name}: {reason}")


def check_encapsulation_key(params: MlKemParams, ek: bytes) -> None:
    """FIPS 203 §7.2 input checks on an encapsulation key; raises InvalidKeyExchange.

    Type check: ``len(ek) == 384k + 32``. Modulus check: each pair of 12-bit coefficients packed in three
    octets of ``ek[:384k]`` must be < q (the same as re-encoding the decoded vector giving the same octets).
    """
    if len(ek) != params.ek_len:
        raise _reject(params, f"wrong length: encapsulation key of {len(ek)} octets, want {params.ek_len}")
    body = ek[: 384 * params.k]
    for i in range(0, len(body), 3):
        b0, b1, b2 = body[i], body[i + 1], body[i + 2]
        if (b0 | (b1 & 0x0F) << 8) >= Q or (b1 >> 4 | b2 << 4) >= Q:
            raise _reject(params, "encapsulation key fails the modulus check (coefficient >= q)")


class MlKemKeyExchange:
    """One side of an ML-KEM key exchange in IKEv2 (``crypto.dh.KeyExchange`` interface)."""

    def __init__(self, method: KeId | int, rng: RandomSource | None = None) -> None:
        params = MLKEM_PARAMS.get(int(method))
        if params is None:
            raise ValueError(f"{method} is not an ML-KEM method")
        self.params = params
        self.method = params.method
        self._rng = rng
        self._private: Any = None
        self._ciphertext: bytes | None = None

    def __repr__(self) -> str:
        return f"MlKemKeyExchange({self.method.name})"

    def _private_key(self) -> Any:
        if self._private is None:
            cls = getattr(_module(), self.params.class_name)
            # a seeded RandomSource makes the key reproducible in tests; otherwise OpenSSL's DRBG
            self._private = cls.from_seed_bytes(self._rng.bytes(64)) if self._rng else cls.generate()
        return self._private

    @property
    def public_value(self) -> bytes:
        """Initiator: ek; responder (after :meth:`respond`): the ciphertext."""
        if self._ciphertext is not None:
            return self._ciphertext
        raw: bytes = self._private_key().public_key().public_bytes_raw()
        return raw

    def shared_secret(self, peer_ke_data: bytes) -> bytes:
        """Initiator: the FIPS 203 §7.3 ciphertext type check, then decapsulation (implicit rejection)."""
        if len(peer_ke_data) != self.params.ct_len:
            got, want = len(peer_ke_data), self.params.ct_len
            raise _reject(self.params, f"wrong length: ciphertext of {got} octets, expected {want}")
        shared: bytes = self._private_key().decapsulate(bytes(peer_ke_data))
        return shared

    def respond(self, peer_ke_data: bytes) -> tuple[bytes, bytes]:
        """Responder: check the initiator's ek (FIPS 203 §7.2), encapsulate; returns (ciphertext, K)."""
        check_encapsulation_key(self.params, peer_ke_data)
        public_cls = getattr(_module(), self.params.class_name.replace("Private", "Public"))
        try:
            public = public_cls.from_public_bytes(bytes(peer_ke_data))
        except ValueError:
            raise _reject(self.params, "encapsulation key refused by the KEM") from None
        shared, ciphertext = public.encapsulate()
        self._ciphertext = ciphertext
        return ciphertext, shared
