"""Thin, typed wrappers over pyca/cryptography used by the registry: HMAC, AES-CBC and the AEADs.

No primitive is implemented here; these functions only fix argument shapes and map library
exceptions to ``ikeguard.crypto.errors``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from ikeguard.crypto.errors import IntegrityError

Key = bytes | bytearray  # key material may live in a wipeable bytearray

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,  # only for NIST CAVP KDF vectors; IKEv2 has no SHA-224 PRF
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def hmac_digest(hash_name: str, key: Key, data: bytes) -> bytes:
    """Full-length HMAC (RFC 2104) with the named SHA hash."""
    mac = hmac.HMAC(key, HASHES[hash_name]())
    mac.update(data)
    return mac.finalize()


def digest(hash_name: str, data: bytes) -> bytes:
    """Plain hash of ``data`` with the named SHA hash."""
    h = hashes.Hash(HASHES[hash_name]())
    h.update(data)
    return h.finalize()


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return constant_time.bytes_eq(a, b)


def aes_cbc_encrypt(key: Key, iv: bytes, data: bytes) -> bytes:
    """AES-CBC without padding (the caller pads; RFC 3602)."""
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: Key, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption without padding removal."""
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def gcm_seal(key: Key, nonce: bytes, aad: bytes, plaintext: bytes, tag_len: int) -> bytes:
    """AES-GCM encryption returning ciphertext || tag truncated to ``tag_len`` (RFC 4106 ICV 8/12/16)."""
    if tag_len == 16:
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct + enc.tag[:tag_len]


def gcm_open(key: Key, nonce: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    """AES-GCM decryption of ciphertext || tag; raises IntegrityError on a bad tag."""
    if len(data) < tag_len:
        raise IntegrityError("AEAD input shorter than its ICV")
    try:
        if tag_len == 16:
            return AESGCM(key).decrypt(nonce, data, aad)
        ct, tag = data[:-tag_len], data[-tag_len:]
        dec = Cipher(algorithms.AES(key), modes.GCM(nonce, tag, min_tag_length=tag_len)).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(ct) + dec.finalize()
    except InvalidTag:
        raise IntegrityError("AES-GCM ICV mismatch") from None


def ccm_seal(key: Key, nonce: bytes, aad: bytes, plaintext: bytes, tag_len: int) -> bytes:
    """AES-CCM encryption (RFC 4309), ciphertext || tag."""
    return AESCCM(key, tag_length=tag_len).encrypt(nonce, plaintext, aad)


def ccm_open(key: Key, nonce: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    """AES-CCM decryption; raises IntegrityError on a bad tag."""
    if len(data) < tag_len:
        raise IntegrityError("AEAD input shorter than its ICV")
    try:
        return AESCCM(key, tag_length=tag_len).decrypt(nonce, data, aad)
    except InvalidTag:
        raise IntegrityError("AES-CCM ICV mismatch") from None


def chacha_seal(key: Key, nonce: bytes, aad: bytes, plaintext: bytes, tag_len: int = 16) -> bytes:
    """ChaCha20-Poly1305 encryption (RFC 7539 / RFC 7634), ciphertext || tag."""
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def chacha_open(key: Key, nonce: bytes, aad: bytes, data: bytes, tag_len: int = 16) -> bytes:
    """ChaCha20-Poly1305 decryption; raises IntegrityError on a bad tag."""
    if len(data) < tag_len:
        raise IntegrityError("AEAD input shorter than its ICV")
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, data, aad)
    except InvalidTag:
        raise IntegrityError("ChaCha20-Poly1305 ICV mismatch") from None
