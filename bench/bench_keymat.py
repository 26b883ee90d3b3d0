"""Key derivation and key exchange throughput of ikeguard.crypto (figures for docs/performance.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from ikeguard.crypto import dh, keymat, registry, sk
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.wire.iana import EncrId, KeId, PrfId

BUDGET_S = 0.4


def _rate(fn: Callable[[], object], budget: float = BUDGET_S) -> float:
    """Calls per second of ``fn`` over about ``budget`` seconds (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        fn()
        n += 1
    return n / elapsed


def _ike_key_schedule(prf_id: int, encr_len: int) -> None:
    ni, nr, gir, spi_i, spi_r = b"n" * 32, b"m" * 32, b"g" * 48, b"i" * 8, b"r" * 8
    skeyseed = keymat.derive_skeyseed(prf_id, ni, nr, gir)
    keys = keymat.derive_ike_keys(prf_id, skeyseed, ni, nr, spi_i, spi_r, encr_len, 0)
    keymat.derive_child_keymat(prf_id, keys.sk_d, ni, nr, 2 * encr_len)


def _key_exchange(method: KeId) -> None:
    initiator, responder = dh.new_key_exchange(method), dh.new_key_exchange(method)
    ke_data, _ = responder.respond(initiator.public_value)
    initiator.shared_secret(ke_data)


def _seal_open(sender: sk.SkProtectorImpl, receiver: sk.SkProtectorImpl) -> None:
    aad, payload = b"H" * 32, b"P" * 1024
    receiver.open(aad, sender.seal(aad, payload))


def main() -> None:
    """Print derivations/s per PRF, full key exchanges/s per method, SK seal+open/s per cipher."""
    print("key schedule (SKEYSEED + SK_* + child KEYMAT), per second:")
    for prf_id in (PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512):
        rate = _rate(partial(_ike_key_schedule, prf_id, 36))
        print(f"  {registry.prf(prf_id).name:<12} {rate:>10.0f}/s")
    print("key exchange (two ephemeral keys + both shared secrets), per second:")
    for method, info in dh.KE_METHODS.items():
        budget = 1.0 if info.kind == "modp" else BUDGET_S
        rate = _rate(partial(_key_exchange, KeId(method)), budget)
        print(f"  {info.name:<12} {rate:>10.1f}/s{'  (legacy)' if info.legacy else ''}")
    print("SK payload seal + open of a 1 KiB inner chain, per second:")
    rng = DeterministicRandom("bench")
    for encr_id, bits in ((EncrId.AES_GCM_16, 256), (EncrId.CHACHA20_POLY1305, None), (EncrId.AES_CBC, 256)):
        encr = registry.encr(encr_id, bits)
        integ = None if encr.aead else registry.integ(14)
        key_e, key_a = rng.bytes(encr.keymat_len), rng.bytes(integ.key_len if integ else 0)
        sender = sk.make_sk_protector(encr, integ, key_e, key_a, rng)
        receiver = sk.make_sk_protector(encr, integ, key_e, key_a, rng)
        rate = _rate(partial(_seal_open, sender, receiver))
        print(f"  {encr.name + ('+' + integ.name if integ else ''):<20} {rate:>10.0f}/s")


if __name__ == "__main__":
    main()
