"""IKE_AUTH signatures per second (RFC 7427, ECDSA P-384 / SHA-384) with the key in a file vs in a SoftHSM2
token through ikeguard.crypto.pkcs11_key (figures for docs/performance.md). The token lives in a temporary
directory of its own (SOFTHSM2_CONF), its key is generated inside it, non-extractable."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.crypto.signatures import PrivateKey, SignatureScheme, sign_auth
from ikeguard.wire.iana import AuthMethod

BUDGET_S = 1.0
OCTETS = os.urandom(600)  # about the size of a real IKE_AUTH signed-octets string
MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _rate(fn: Callable[[], object], budget: float = BUDGET_S) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        fn()
        n += 1
    return n / elapsed


def _threaded_rate(fn: Callable[[], object], threads: int, budget: float = BUDGET_S) -> float:
    stop = time.perf_counter() + budget

    def loop() -> int:
        n = 0
        while time.perf_counter() < stop:
            fn()
            n += 1
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    return total / (time.perf_counter() - start)


def _sign(key: PrivateKey) -> Callable[[], bytes]:
    return lambda: sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, SignatureScheme.ECDSA_SHA384)


def _token_key(directory: Path) -> PrivateKey:
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    from ikeguard.crypto.pkcs11_key import open_token_key

    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234",
                    "--so-pin", "5678"], check=True, capture_output=True)
    token = pkcs11.lib(MODULE).get_token(token_label="bench")
    with token.open(user_pin="1234", rw=True) as session:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")}, local=True)
        params.generate_keypair(store=True, label="ike",
                                private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True})
    os.environ["BENCH_PIN"] = "1234"
    return open_token_key(f"pkcs11:token=bench;object=ike?module-path={MODULE}&pin-source=env:BENCH_PIN")


def main() -> None:
    file_key = ec.generate_private_key(ec.SECP384R1())
    with tempfile.TemporaryDirectory() as tmp:
        token_key = _token_key(Path(tmp))
        rows = [("file key, 1 thread", _rate(_sign(file_key))),
                ("SoftHSM2 key, 1 thread", _rate(_sign(token_key))),
                ("file key, 4 threads", _threaded_rate(_sign(file_key), 4)),
                ("SoftHSM2 key, 4 threads (calls serialised)", _threaded_rate(_sign(token_key), 4))]
    for name, rate in rows:
        print(f"  ECDSA P-384 AUTH signatures/s, {name:40s} {rate:8.0f}")
    print(f"  token / file (1 thread): {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
