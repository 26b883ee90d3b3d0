"""Issue 18 item 7: the cost of an IKE private key in a PKCS#11 token (SoftHSM2) instead of a file.

Two numbers per key type: RFC 7427 AUTH signatures per second (``sign_auth`` as IKE_AUTH calls it) with the
key in a file (cryptography) and in SoftHSM2 (``crypto/pkcs11_key.py``: C_Sign through one pooled, logged-in
session), and the engine's IKE_SA setup rate (bench_engine's certificate case, ECDSA P-384 + ECP-384) with the
responder's key in a file and in the token (both peers in one process, as bench_engine: the responder's
signature is one of the two AUTH signatures and two verifications of a setup; best of three, interleaved).

The token lives in a temporary directory (its own softhsm2.conf, keys generated non-extractable by
tests/harness/tokens.py); the measurement runs in a child process with that SOFTHSM2_CONF, because a PKCS#11
module reads its configuration once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ikeguard.crypto.signatures import PrivateKey, scheme_for, sign_auth
from ikeguard.wire.iana import AuthMethod, HashAlgorithm

KINDS = (("ec:secp256r1", "ECDSA P-256", HashAlgorithm.SHA2_256),
         ("ec:secp384r1", "ECDSA P-384", HashAlgorithm.SHA2_384),
         ("rsa:3072", "RSA-3072 PSS", HashAlgorithm.SHA2_256))
SECONDS = 1.0


def _rate(key: PrivateKey, hash_alg: HashAlgorithm) -> float:
    scheme = scheme_for(key, hash_alg)
    data = os.urandom(400)  # about the size of the octets an IKE_AUTH signs (RFC 7296 §2.15)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < SECONDS or count < 20:
        sign_auth(key, data, AuthMethod.DIGITAL_SIGNATURE, scheme)
        count += 1
    return count / elapsed


def _file_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa:"):
        return rsa.generate_private_key(65537, int(kind[4:]))
    return ec.generate_private_key({"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}[kind[3:]])


def child(uris: list[str]) -> None:
    """Measure in this process (SOFTHSM2_CONF and the PIN variable set by ``main``)."""
    from bench.bench_engine import _setups
    from ikeguard.crypto.pkcs11_key import open_token_key

    for (kind, label, hash_alg), uri in zip(KINDS, uris, strict=True):
        token_key = open_token_key(uri)
        file_rate, token_rate = _rate(_file_key(kind), hash_alg), _rate(token_key, hash_alg)
        print(f"AUTH signatures/s, {label}: file {file_rate:,.0f}, SoftHSM2 {token_rate:,.0f} "
              f"({token_rate / file_rate:.0%} of file)")
    token_p384 = open_token_key(uris[1])
    assert isinstance(token_p384, ec.EllipticCurvePrivateKey)
    count, file_setups, token_setups = 100, 0.0, 0.0
    for _ in range(3):  # interleaved, best of three: the machine is shared
        file_setups = max(file_setups, _setups("cert", count))
        token_setups = max(token_setups, _setups("cert", count, token_p384))
    print(f"engine IKE_SA setups/s, ECDSA P-384 certificates, responder key in a file: {file_setups:,.0f}, "
          f"in SoftHSM2: {token_setups:,.0f} ({token_setups / file_setups - 1:+.0%})")


def main() -> None:
    """Make a SoftHSM2 token with one key per type, then measure in a child process."""
    from tests.harness.tokens import softhsm_token

    with tempfile.TemporaryDirectory(prefix="ikg-bench-hsm-") as tmp:
        token = softhsm_token(Path(tmp))
        for kind, _, _ in KINDS:
            token.generate(kind.replace(":", "-"), kind)
        uris = [token.uri(kind.replace(":", "-"), pin_source="env:IKG_BENCH_PIN") for kind, _, _ in KINDS]
        env = {**os.environ, **token.env, "IKG_BENCH_PIN": token.pin}
        subprocess.run([sys.executable, "-m", "bench.bench_token_keys", "--child", *uris], env=env,
                       check=True, timeout=600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
