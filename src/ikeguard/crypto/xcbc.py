"""AES-XCBC-MAC (RFC 3566) and AES-XCBC-PRF-128 (RFC 4434) for legacy interop.

Written here by hand because `cryptography` offers CMAC but not XCBC (they differ in key derivation and
padding). Only the XCBC *mode* is ours: every block operation is pyca/cryptography's AES (single-block ECB).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import constant_time
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16


def _xor(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _aes_block(key: bytes | bytearray, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block, XCBC mode
    return encryptor.update(block) + encryptor.finalize()


def xcbc_mac(key: bytes | bytearray, data: bytes | bytearray) -> bytes:
    """Full 128-bit AES-XCBC-MAC of ``data`` under a 128-bit ``key`` (RFC 3566 §4)."""
    if len(key) != BLOCK:
        raise ValueError("AES-XCBC-MAC needs a 128-bit key")
    k1 = _aes_block(key, b"\x01" * BLOCK)
    k2 = _aes_block(key, b"\x02" * BLOCK)
    k3 = _aes_block(key, b"\x03" * BLOCK)
    cbc = Cipher(algorithms.AES(k1), modes.ECB()).encryptor()  # noqa: S305 - CBC chaining done below
    state = b"\x00" * BLOCK
    full_blocks = (len(data) - 1) // BLOCK if data else 0
    for i in range(full_blocks):
        state = cbc.update(_xor(state, data[i * BLOCK : (i + 1) * BLOCK]))
    last = data[full_blocks * BLOCK :]
    if len(last) == BLOCK:  # RFC 3566 §4 step 3a
        last = _xor(_xor(state, last), k2)
    else:  # step 3b: pad with 0x80 00.. and use K3
        padded = last + b"\x80" + b"\x00" * (BLOCK - 1 - len(last))
        last = _xor(_xor(state, padded), k3)
    return cbc.update(last) + cbc.finalize()


def xcbc_mac_96(key: bytes | bytearray, data: bytes) -> bytes:
    """AUTH_AES_XCBC_96: the MAC truncated to 96 bits (RFC 3566 §4)."""
    return xcbc_mac(key, data)[:12]


def xcbc_prf_128(key: bytes | bytearray, data: bytes) -> bytes:
    """PRF_AES128_XCBC with a key of any length (RFC 4434 §2)."""
    if len(key) < BLOCK:
        return xcbc_mac(bytes(key) + b"\x00" * (BLOCK - len(key)), data)
    if len(key) > BLOCK:
        return xcbc_mac(xcbc_mac(b"\x00" * BLOCK, key), data)
    return xcbc_mac(key, data)


def xcbc_verify_96(key: bytes | bytearray, data: bytes, icv: bytes) -> bool:
    """Constant-time check of an AUTH_AES_XCBC_96 ICV."""
    return constant_time.bytes_eq(xcbc_mac_96(key, data), icv)
