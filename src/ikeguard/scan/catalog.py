"""What the scanner asks about: every IKEv2 transform of the IANA registries a responder may accept.

One entry per (transform type, ID, key length) — the unit a responder accepts or refuses (RFC 7296 §3.3.5:
a transform with a different Key Length is a different transform). ENCR covers the ciphers in the IKEv2
"Transform Type 1" registry that any implementation ships (DES, 3DES, CAST, Blowfish, NULL, AES in CBC/CTR/
CCM/GCM, Camellia in CBC/CTR/CCM, ChaCha20-Poly1305) with each key length their RFCs allow; PRF, INTEG and KE
list the whole registries (KE: MODP 768 to 8192, RFC 5114 groups, NIST ECP, Brainpool, Curve25519/448).
ADDKE: ML-KEM-512/768/1024 (FIPS 203) as the first additional key exchange of RFC 9370 (``ke1_`` in
strongSwan's syntax), the post-quantum part of a hybrid IKE_SA_INIT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ikeguard.wire.iana import EncrId, IntegId, KeId, PrfId, TransformType
from ikeguard.wire.transforms import AEAD_ENCR_IDS, Transform

CLASSES: tuple[str, ...] = ("ENCR", "PRF", "INTEG", "KE", "ADDKE")
"""Transform classes in the order the scanner enumerates them (and the report lists them)."""

ESP_CLASSES: tuple[str, ...] = ("ESP_ENCR", "ESP_INTEG", "ESP_KE")
"""Child SA classes of the scan with credentials (``scan.authenticated``), probed and reported after IKE's."""

Status = Literal["accepted", "refused", "not_verified"]

_AES_LENGTHS = (128, 192, 256)

_ENCR: tuple[tuple[EncrId, tuple[int | None, ...]], ...] = (
    (EncrId.DES, (None,)),
    (EncrId.TRIPLE_DES, (None,)),
    (EncrId.CAST, (128,)),
    (EncrId.BLOWFISH, (128, 192, 256)),
    (EncrId.NULL, (None,)),
    (EncrId.AES_CBC, _AES_LENGTHS),
    (EncrId.AES_CTR, _AES_LENGTHS),
    (EncrId.CAMELLIA_CBC, _AES_LENGTHS),
    (EncrId.CAMELLIA_CTR, _AES_LENGTHS),
    (EncrId.AES_CCM_8, _AES_LENGTHS),
    (EncrId.AES_CCM_12, _AES_LENGTHS),
    (EncrId.AES_CCM_16, _AES_LENGTHS),
    (EncrId.AES_GCM_8, _AES_LENGTHS),
    (EncrId.AES_GCM_12, _AES_LENGTHS),
    (EncrId.AES_GCM_16, _AES_LENGTHS),
    (EncrId.CAMELLIA_CCM_8, _AES_LENGTHS),
    (EncrId.CAMELLIA_CCM_12, _AES_LENGTHS),
    (EncrId.CAMELLIA_CCM_16, _AES_LENGTHS),
    (EncrId.CHACHA20_POLY1305, (None,)),
)

_INTEG: tuple[IntegId, ...] = (
    IntegId.HMAC_MD5_96, IntegId.HMAC_SHA1_96, IntegId.DES_MAC, IntegId.KPDK_MD5, IntegId.AES_XCBC_96,
    IntegId.HMAC_MD5_128, IntegId.HMAC_SHA1_160, IntegId.AES_CMAC_96, IntegId.HMAC_SHA2_256_128,
    IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256,
)

_KE: tuple[KeId, ...] = (
    KeId.MODP_768, KeId.MODP_1024, KeId.MODP_1536, KeId.MODP_2048, KeId.MODP_3072, KeId.MODP_4096,
    KeId.MODP_6144, KeId.MODP_8192, KeId.MODP_1024_160, KeId.MODP_2048_224, KeId.MODP_2048_256,
    KeId.ECP_192, KeId.ECP_224, KeId.ECP_256, KeId.ECP_384, KeId.ECP_521, KeId.BRAINPOOL_P224R1,
    KeId.BRAINPOOL_P256R1, KeId.BRAINPOOL_P384R1, KeId.BRAINPOOL_P512R1, KeId.CURVE25519, KeId.CURVE448,
)

_ADDKE: tuple[KeId, ...] = (KeId.ML_KEM_512, KeId.ML_KEM_768, KeId.ML_KEM_1024)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One transform the scanner asks about, with the class it belongs to."""

    cls: str
    transform: Transform

    @property
    def label(self) -> str:
        """strongSwan-style name with key length, e.g. ``AES_CBC-256`` (what `swanctl --list-sas` prints)."""
        return self.transform.describe()

    @property
    def profile_name(self) -> str:
        """The name the profile data files and ``--policy`` files use, e.g. ``AES_CBC/256``."""
        registry = {"ENCR": EncrId, "PRF": PrfId, "INTEG": IntegId, "KE": KeId, "ADDKE": KeId,
                    "ESP_ENCR": EncrId, "ESP_INTEG": IntegId, "ESP_KE": KeId}[self.cls]
        name = registry(self.transform.id).name
        return f"{name}/{self.transform.key_length}" if self.transform.key_length is not None else name

    @property
    def is_aead(self) -> bool:
        """An AEAD cipher (RFC 5282): offered in a proposal without INTEG."""
        return self.cls in ("ENCR", "ESP_ENCR") and self.transform.id in AEAD_ENCR_IDS

    @property
    def protocol(self) -> Literal["ike", "esp"]:
        """Whose proposal the transform is judged in: the IKE SA's or a Child SA's (profile rules differ)."""
        return "esp" if self.cls.startswith("ESP_") else "ike"


def candidates() -> dict[str, tuple[Candidate, ...]]:
    """Every candidate per class, in the order probed and reported."""
    encr = tuple(Candidate("ENCR", Transform(TransformType.ENCR, e, length))
                 for e, lengths in _ENCR for length in lengths)
    prf = tuple(Candidate("PRF", Transform(TransformType.PRF, p)) for p in PrfId)
    integ = tuple(Candidate("INTEG", Transform(TransformType.INTEG, i)) for i in _INTEG)
    ke = tuple(Candidate("KE", Transform(TransformType.KE, k)) for k in _KE)
    addke = tuple(Candidate("ADDKE", Transform(TransformType.ADDKE1, k)) for k in _ADDKE)
    return {"ENCR": encr, "PRF": prf, "INTEG": integ, "KE": ke, "ADDKE": addke}


@dataclass(frozen=True, slots=True)
class Observation:
    """The verdict of the wire on one transform: accepted, refused or not verified, and why."""

    candidate: Candidate
    status: Status
    evidence: str
