"""ML-KEM-768/1024 as IKEv2 key exchanges (crypto/mlkem.py): FIPS 203 §7.2/§7.3 input checks, both roles,
and a third-party known answer for decapsulation's implicit rejection (tests/vectors/mlkem/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ikeguard.crypto import dh
from ikeguard.crypto.errors import InvalidKeyExchange
from ikeguard.crypto.mlkem import MLKEM_PARAMS, MlKemKeyExchange, check_encapsulation_key, mlkem_methods
from ikeguard.wire.iana import KeId

pytestmark = pytest.mark.skipif(not mlkem_methods(), reason="this cryptography/OpenSSL has no ML-KEM")


class Fixed:
    """A RandomSource returning given octets (the KAT's coins)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def bytes(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        assert len(out) == n
        return out


def test_implicit_rejection_known_answer(vectors_dir: Path) -> None:
    v = json.loads((vectors_dir / "mlkem" / "pq-crystals-mlkem768-implicit-rejection.json").read_text())
    ke = MlKemKeyExchange(KeId.ML_KEM_768, Fixed(bytes.fromhex(v["coins"])))
    rejected = ke.shared_secret(bytes.fromhex(v["pseudorandom_ciphertext"]))
    assert rejected.hex() == v["pseudorandom_shared_secret"]


@pytest.mark.parametrize("method", [KeId.ML_KEM_768, KeId.ML_KEM_1024])
def test_both_roles_agree_and_sizes_match_the_draft(method: KeId) -> None:
    params = MLKEM_PARAMS[method]
    initiator, responder = dh.new_key_exchange(method), dh.new_key_exchange(method)
    assert len(initiator.public_value) == params.ek_len
    ciphertext, shared = responder.respond(initiator.public_value)
    assert len(ciphertext) == params.ct_len and len(shared) == 32 and responder.public_value == ciphertext
    assert initiator.shared_secret(ciphertext) == shared
    assert repr(initiator) == f"MlKemKeyExchange({method.name})"


@pytest.mark.parametrize("method", [KeId.ML_KEM_768, KeId.ML_KEM_1024])
def test_encapsulation_key_checks(method: KeId) -> None:
    params = MLKEM_PARAMS[method]
    ek = bytearray(dh.new_key_exchange(method).public_value)
    check_encapsulation_key(params, bytes(ek))
    for bad in (bytes(ek[:-1]), bytes(ek) + b"\0"):
        with pytest.raises(InvalidKeyExchange, match="wrong length"):
            dh.new_key_exchange(method).respond(bad)
    # modulus check: a 12-bit coefficient of q = 3329 (0xD01), first and second of a 3-octet pair
    for i, triple in ((0, (0x01, 0x0D, ek[2])), (3, (ek[3], (ek[4] & 0x0F) | 0x10, 0xD0))):
        mutated = bytearray(ek)
        mutated[i:i + 3] = bytes(triple)
        with pytest.raises(InvalidKeyExchange, match="modulus check"):
            dh.new_key_exchange(method).respond(bytes(mutated))
    # the rho seed (last 32 octets) is not reduced: any value passes
    seeded = bytes(ek[:-32]) + b"\xff" * 32
    check_encapsulation_key(params, seeded)


@pytest.mark.parametrize("method", [KeId.ML_KEM_768, KeId.ML_KEM_1024])
def test_ciphertext_type_check(method: KeId) -> None:
    params = MLKEM_PARAMS[method]
    initiator = dh.new_key_exchange(method)
    _ = initiator.public_value
    for bad in (b"\0" * (params.ct_len - 1), b"\0" * (params.ct_len + 1), b""):
        with pytest.raises(InvalidKeyExchange, match="wrong length"):
            initiator.shared_secret(bad)
