"""ikeguard's ML-KEM (crypto/mlkem.py over pyca/cryptography) against an independent implementation: OpenSSL
3.6 from the strongSwan 6.1 chroot (tests/harness/strongswan61.py). The same 64-octet seed d || z gives
the same encapsulation key (FIPS 203 ML-KEM.KeyGen), and ciphertexts made by either side decapsulate to
the same shared secret on the other (Encaps / Decaps), for ML-KEM-768 and ML-KEM-1024."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from ikeguard.crypto.mlkem import MlKemKeyExchange
from ikeguard.wire.iana import KeId
from tests.harness.strongswan61 import strongswan61_root

pytestmark = [pytest.mark.root, pytest.mark.interop]
SEED = bytes(range(64))


class Fixed:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def bytes(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


def _openssl(root: Path, script: str) -> None:
    subprocess.run(["chroot", str(root), "sh", "-ec", script], check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize(("method", "name"),
                         [(KeId.ML_KEM_768, "ML-KEM-768"), (KeId.ML_KEM_1024, "ML-KEM-1024")])
def test_keys_and_ciphertexts_match_openssl(method: KeId, name: str) -> None:
    root = strongswan61_root()
    with tempfile.TemporaryDirectory(dir=root / "tmp") as tmp:
        inside = "/tmp/" + Path(tmp).name
        _openssl(root, f"cd {inside}; openssl genpkey -algorithm {name} -out k.pem"
                       f" -pkeyopt hexseed:{SEED.hex()};"
                       " openssl pkey -in k.pem -pubout -outform DER -out pub.der;"
                       " openssl pkey -in k.pem -pubout -out pub.pem;"
                       " openssl pkeyutl -encap -pubin -inkey pub.pem -out ct.bin -secret ss.bin")
        ours = MlKemKeyExchange(method, Fixed(SEED))
        ek = ours.public_value
        assert (Path(tmp) / "pub.der").read_bytes().endswith(ek)  # SubjectPublicKeyInfo ends with the raw ek
        # OpenSSL encapsulated to the key from the same seed: our decapsulation gives its secret
        ct = (Path(tmp) / "ct.bin").read_bytes()
        assert ours.shared_secret(ct) == (Path(tmp) / "ss.bin").read_bytes()
        # we encapsulate (responder role) to OpenSSL's key: OpenSSL decapsulates to our secret
        ciphertext, shared = MlKemKeyExchange(method).respond(ek)
        (Path(tmp) / "ours.bin").write_bytes(ciphertext)
        _openssl(root, f"cd {inside}; openssl pkeyutl -decap -inkey k.pem -in ours.bin -out ss2.bin")
        assert (Path(tmp) / "ss2.bin").read_bytes() == shared
