"""IKEv2 key derivation as pure functions (RFC 7296 §2.13-2.18, §2.15, §2.23).

Inputs and outputs are octet strings; the PRF is chosen by its IANA id through the registry.
Derived keys are returned in :class:`IkeKeys` / :class:`ChildKeys`, whose repr never shows key bytes and
which can be wiped in place.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields

from ikeguard.crypto import primitives, registry
from ikeguard.crypto.primitives import Key
from ikeguard.crypto.registry import PrfAlgorithm
from ikeguard.crypto.zeroize import scrub_owned, wipe

Prf = int | PrfAlgorithm  # an IANA PrfId, or an algorithm object (e.g. registry.hmac_prf for KATs)

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15
PRF_PLUS_MAX_BLOCKS = 255  # RFC 7296 §2.13: the counter is one octet


def prf(prf_id: Prf, key: Key, data: bytes) -> bytes:
    """prf(K, S) of the negotiated PRF transform (RFC 7296 §2.13)."""
    return registry.prf(prf_id).compute(key, bytes(data))


def prf_plus(prf_id: Prf, key: Key, seed: bytes, length: int) -> bytes:
    """prf+(K, S) = T1 | T2 | ..., Tn = prf(K, Tn-1 | S | n), truncated to ``length`` (RFC 7296 §2.13)."""
    stream = prf_plus_secret(prf_id, key, seed, length)
    try:
        return bytes(stream)
    finally:
        wipe(stream)


def prf_plus_secret(prf_id: Prf, key: Key, seed: bytes, length: int) -> bytearray:
    """prf+ into a ``bytearray`` the caller wipes; every intermediate block is scrubbed (crypto.zeroize)."""
    algorithm = registry.prf(prf_id)
    if length < 0 or length > PRF_PLUS_MAX_BLOCKS * algorithm.output_len:
        raise ValueError(f"prf+ cannot produce {length} octets with {algorithm.name}")
    seed = bytes(seed)
    blocks = -(-length // algorithm.output_len) if length else 0
    out = bytearray(blocks * algorithm.output_len)
    block = b""
    for counter in range(1, blocks + 1):
        data = b"".join((block, seed, bytes([counter])))  # three parts: always a new object
        scrub_owned(block)
        block = algorithm.compute(key, data)
        scrub_owned(data)
        end = counter * algorithm.output_len
        out[end - len(block) : end] = block
    scrub_owned(block)
    del out[length:]  # shrinking in place keeps the same allocation, which wipe() then clears
    return out


def derive_skeyseed(prf_id: Prf, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir); fixed-key PRFs take half the key from each nonce (RFC 7296 §2.14)."""
    algorithm = registry.prf(prf_id)
    if algorithm.fixed_key:
        half = algorithm.key_len // 2
        key = bytes(ni[:half]) + bytes(nr[:half])
    else:
        key = bytes(ni) + bytes(nr)
    return algorithm.compute(key, bytes(g_ir))


def derive_rekey_skeyseed(prf_id: Prf, old_sk_d: Key, g_ir_new: bytes, ni: bytes, nr: bytes,
                          additional: bytes = b"") -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr [| SK(1) | ... | SK(n)]) for an IKE SA rekey (RFC 7296
    §2.18), the RFC 9370 §2.2.4 additional shared secrets after the nonces."""
    return prf(prf_id, old_sk_d, bytes(g_ir_new) + bytes(ni) + bytes(nr) + bytes(additional))


def _secret(n: int = 0) -> bytearray:
    return bytearray(n)


@dataclass(frozen=True, repr=False)
class _WipeableKeys:
    """Key containers: bytearray fields, hidden from repr, zeroed by wipe()."""

    def wipe(self) -> None:
        """Overwrite every key with zeros in place (RFC-independent hygiene; ARCHITECTURE rule 6)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytearray):
                wipe(value)

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{f.name}=<{len(getattr(self, f.name))} octets>"
            for f in fields(self)
            if isinstance(getattr(self, f.name), bytearray)
        )
        return f"{type(self).__name__}({sizes})"


@dataclass(frozen=True, repr=False)
class IkeKeys(_WipeableKeys):
    """SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (RFC 7296 §2.14); SK_e* include an AEAD salt."""

    sk_d: bytearray = field(default_factory=_secret)
    sk_ai: bytearray = field(default_factory=_secret)
    sk_ar: bytearray = field(default_factory=_secret)
    sk_ei: bytearray = field(default_factory=_secret)
    sk_er: bytearray = field(default_factory=_secret)
    sk_pi: bytearray = field(default_factory=_secret)
    sk_pr: bytearray = field(default_factory=_secret)


@dataclass(frozen=True, repr=False)
class ChildKeys(_WipeableKeys):
    """ESP keys of one Child SA in KEYMAT order (RFC 7296 §2.17): initiator->responder first."""

    encr_i: bytearray = field(default_factory=_secret)
    integ_i: bytearray = field(default_factory=_secret)
    encr_r: bytearray = field(default_factory=_secret)
    integ_r: bytearray = field(default_factory=_secret)


def derive_ike_keys(
    prf_id: Prf,
    skeyseed: Key,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int,
) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).

    ``encr_key_len`` is the full SK_e length (key + salt for AEADs, RFC 5282 §7.1); ``integ_key_len`` is 0
    with an AEAD. SK_d/SK_pi/SK_pr have the PRF's preferred key length (RFC 7296 §2.14).
    """
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise ValueError("IKE SPIs are 8 octets")
    prf_len = registry.prf(prf_id).key_len
    sizes = (prf_len, integ_key_len, integ_key_len, encr_key_len, encr_key_len, prf_len, prf_len)
    seed = bytes(ni) + bytes(nr) + bytes(spi_i) + bytes(spi_r)
    stream = prf_plus_secret(prf_id, skeyseed, seed, sum(sizes))
    view = memoryview(stream)
    parts: list[bytearray] = []
    offset = 0
    for size in sizes:
        parts.append(bytearray(view[offset : offset + size]))
        offset += size
    view.release()
    wipe(stream)
    return IkeKeys(*parts)


def derive_child_keymat(
    prf_id: Prf, sk_d: Key, ni: bytes, nr: bytes, length: int, g_ir: bytes | None = None,
    additional: bytes = b"",
) -> bytearray:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr [| SK(1) | ... | SK(n)]) for a Child SA, with or without
    PFS (RFC 7296 §2.17); the RFC 9370 §2.2.4 additional shared secrets follow the nonces (strongSwan 6.1
    derives the same). The caller wipes it once split."""
    seed = b"".join((bytes(g_ir) if g_ir is not None else b"", bytes(ni), bytes(nr), bytes(additional)))
    try:
        return prf_plus_secret(prf_id, sk_d, seed, length)
    finally:
        if g_ir is not None or additional:
            scrub_owned(seed)  # the seed carries the shared secrets


def split_child_keymat(keymat: bytes | bytearray, encr_key_len: int, integ_key_len: int) -> ChildKeys:
    """Split KEYMAT: encr then integ for initiator->responder, then for responder->initiator (§2.17)."""
    need = 2 * (encr_key_len + integ_key_len)
    if len(keymat) != need:
        raise ValueError(f"KEYMAT must be {need} octets")
    e, i = encr_key_len, integ_key_len
    with memoryview(keymat) as view:  # slices of a view copy nothing: no unwiped intermediate
        return ChildKeys(
            bytearray(view[:e]),
            bytearray(view[e : e + i]),
            bytearray(view[e + i : 2 * e + i]),
            bytearray(view[2 * e + i :]),
        )


def auth_signed_octets(
    message: bytes, nonce: bytes, prf_id: Prf, sk_p: Key | bytearray, id_payload_body: bytes
) -> bytes:
    """<SignedOctets> = RealMessage | Nonce(peer) | prf(SK_p, RestOfIDPayload) (RFC 7296 §2.15).

    ``message`` is our first message (IKE_SA_INIT) as sent, ``nonce`` the peer's nonce data, ``sk_p`` our
    SK_pi/SK_pr and ``id_payload_body`` our ID payload without its 4-octet generic header.
    """
    return bytes(message) + bytes(nonce) + prf(prf_id, sk_p, id_payload_body)


def psk_auth(prf_id: Prf, secret: Key, signed_octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 §2.15)."""
    return prf(prf_id, prf(prf_id, secret, KEY_PAD), signed_octets)


def natd_hash(
    spi_i: bytes, spi_r: bytes, ip: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> bytes:
    """NAT_DETECTION_*_IP data = SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23)."""
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        packed = ip.packed  # the engine's endpoints: no round trip through text
    elif isinstance(ip, bytes):
        if len(ip) not in (4, 16):
            raise ValueError("IP address must be 4 or 16 octets")
        packed = ip
    else:
        packed = ipaddress.ip_address(ip).packed
    if not 0 <= port <= 0xFFFF:
        raise ValueError("port out of range")
    return primitives.digest("sha1", bytes(spi_i) + bytes(spi_r) + packed + port.to_bytes(2, "big"))
