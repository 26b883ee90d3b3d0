"""Post-quantum preshared keys in IKEv2 (RFC 8784): the PPK mixed into SK_d, SK_pi and SK_pr at IKE_AUTH.

Both ends announce USE_PPK in IKE_SA_INIT. The initiator then sends PPK_IDENTITY (and, when the PPK is
optional for it, NO_PPK_AUTH: the AUTH data computed without the PPK) with an AUTH computed with SK_pi =
prf+(PPK, SK_pi'); a responder that has that PPK replaces SK_d, SK_pi and SK_pr (§3: SK_x = prf+(PPK,
SK_x'), each as long as the PRF output) and answers PPK_IDENTITY; one without it falls back to NO_PPK_AUTH
unless its own configuration requires the PPK. SK_e/SK_a are not changed, so the IKE_AUTH messages are
protected as before. With RFC 9370 additional key exchanges the PPK applies to the keys after the last one.
Written by hand: no maintained Python library implements RFC 8784.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikeguard.crypto.keymat import prf_plus

if TYPE_CHECKING:
    from ikeguard.engine.keys import IkeSaCrypto

__all__ = ["PPK_ID_FIXED", "PpkKeys", "PpkSettings", "apply_ppk", "parse_ppk_identity", "ppk_identity_data",
           "ppk_keys"]

PPK_ID_OPAQUE = 1  # RFC 8784 §3 PPK_ID types
PPK_ID_FIXED = 2


@dataclass(frozen=True)
class PpkSettings:
    """A connection's PPK: its identity, the key (never shown) and whether the tunnel requires it."""

    identity: bytes
    key: bytes = field(repr=False)
    required: bool = False


@dataclass(frozen=True, repr=False)
class PpkKeys:
    """SK_d, SK_pi, SK_pr with the PPK mixed in."""

    sk_d: bytes
    sk_pi: bytes
    sk_pr: bytes


def ppk_identity_data(identity: bytes) -> bytes:
    """PPK_IDENTITY notify data: PPK_ID_FIXED then the identity (what strongSwan and libreswan send)."""
    return bytes([PPK_ID_FIXED]) + identity


def parse_ppk_identity(data: bytes) -> bytes | None:
    """The identity in PPK_IDENTITY data (either PPK_ID type), or None when malformed."""
    if len(data) < 2 or data[0] not in (PPK_ID_OPAQUE, PPK_ID_FIXED):
        return None
    return bytes(data[1:])


def ppk_keys(crypto: IkeSaCrypto, ppk: bytes) -> PpkKeys:
    """SK_d, SK_pi, SK_pr = prf+(PPK, SK_x') (RFC 8784 §3), from the IKE SA's current keys."""
    keys = crypto.keys

    def mix(old: bytes | bytearray) -> bytes:
        return prf_plus(crypto.prf_id, ppk, bytes(old), len(old))

    return PpkKeys(mix(keys.sk_d), mix(keys.sk_pi), mix(keys.sk_pr))


def apply_ppk(crypto: IkeSaCrypto, mixed: PpkKeys) -> None:
    """Replace SK_d, SK_pi and SK_pr in place (the SK protectors hold SK_e/SK_a only)."""
    keys = crypto.keys
    keys.sk_d[:] = mixed.sk_d
    keys.sk_pi[:] = mixed.sk_pi
    keys.sk_pr[:] = mixed.sk_pr
