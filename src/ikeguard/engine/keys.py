"""Key schedule glue: a selected proposal + nonces + shared secret -> the IKE SA's keys and SK protectors,
and Child SA keys (RFC 7296 §2.13-§2.18). The primitives live in ``ikeguard.crypto``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeguard.crypto import registry
from ikeguard.crypto.keymat import (
    ChildKeys,
    IkeKeys,
    derive_child_keymat,
    derive_ike_keys,
    derive_rekey_skeyseed,
    derive_skeyseed,
    split_child_keymat,
)
from ikeguard.crypto.random import RandomSource
from ikeguard.crypto.registry import EncrAlgorithm, IntegAlgorithm
from ikeguard.crypto.sk import SkProtectorImpl, make_sk_protectors
from ikeguard.crypto.zeroize import wipe
from ikeguard.wire.iana import IntegId
from ikeguard.wire.proposal_string import ProposalSpec


def _one(spec: ProposalSpec) -> tuple[EncrAlgorithm, IntegAlgorithm | None]:
    encr_t = spec.encr[0]
    encr = registry.encr(encr_t.id, encr_t.key_length)
    integ = None
    if spec.integ and spec.integ[0].id != IntegId.NONE:
        integ = registry.integ(spec.integ[0].id)
    return encr, integ


def proposal_prf(spec: ProposalSpec) -> int:
    """The PRF transform ID of a selected IKE proposal."""
    return spec.prf[0].id


def proposal_ke(spec: ProposalSpec) -> int:
    """The key exchange method of a selected proposal (0 = none)."""
    return spec.ke[0].id if spec.ke else 0


@dataclass(repr=False, slots=True)  # slots: one per IKE SA (issue 22, memory per SA)
class IkeSaCrypto:
    """Everything protecting one IKE SA: algorithms, keys and per-direction SK protectors."""

    prf_id: int
    keys: IkeKeys
    outbound: SkProtectorImpl
    inbound: SkProtectorImpl
    encr: EncrAlgorithm = field(repr=False)
    integ: IntegAlgorithm | None = field(repr=False)

    def wipe(self) -> None:
        """Zero the key material (ARCHITECTURE rule 6)."""
        self.keys.wipe()

    def __repr__(self) -> str:
        return f"IkeSaCrypto(prf={self.prf_id}, encr={self.encr.name})"


def ike_sa_crypto(
    spec: ProposalSpec,
    skeyseed: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    initiator: bool,
    rng: RandomSource,
) -> IkeSaCrypto:
    """SK_* from SKEYSEED (§2.14) and the protectors of our send/receive directions."""
    encr, integ = _one(spec)
    prf_id = proposal_prf(spec)
    keys = derive_ike_keys(
        prf_id, skeyseed, ni, nr, spi_i, spi_r, encr.keymat_len, integ.key_len if integ else 0
    )
    out, inb = make_sk_protectors(encr, integ, keys, initiator, rng)
    return IkeSaCrypto(prf_id, keys, out, inb, encr, integ)


def initial_skeyseed(spec: ProposalSpec, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14)."""
    return derive_skeyseed(proposal_prf(spec), ni, nr, shared)


def rekey_skeyseed(old_prf: int, old_sk_d: bytes, shared: bytes, ni: bytes, nr: bytes,
                   additional: bytes = b"") -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr [| SK(1) ...]) (RFC 7296 §2.18, RFC 9370 §2.2.4)."""
    return derive_rekey_skeyseed(old_prf, old_sk_d, shared, ni, nr, additional)


@dataclass(frozen=True, repr=False, slots=True)  # one per Child SA (issue 22)
class ChildSaKeys:
    """ESP algorithms and the KEYMAT split of one Child SA."""

    encr: EncrAlgorithm
    integ: IntegAlgorithm | None
    keys: ChildKeys

    def __repr__(self) -> str:
        return f"ChildSaKeys(encr={self.encr.name})"


def child_sa_keys(
    prf_id: int, sk_d: bytes, spec: ProposalSpec, ni: bytes, nr: bytes, shared: bytes | None,
    additional: bytes = b"",
) -> ChildSaKeys:
    """KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr [| SK(1) | ... | SK(n)]) split per RFC 7296 §2.17, with the
    RFC 9370 §2.2.4 additional shared secrets after the nonces."""
    encr, integ = _one(spec)
    integ_len = integ.key_len if integ else 0
    length = 2 * (encr.keymat_len + integ_len)
    keymat = derive_child_keymat(prf_id, sk_d, ni, nr, length, shared, additional)
    try:
        return ChildSaKeys(encr, integ, split_child_keymat(keymat, encr.keymat_len, integ_len))
    finally:
        wipe(keymat)


def additional_ke_update(
    old: IkeSaCrypto,
    spec: ProposalSpec,
    shared: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    initiator: bool,
    rng: RandomSource,
) -> IkeSaCrypto:
    """The IKE SA's keys after one additional key exchange (RFC 9370 §2.2.2):
    SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then SK_*(n) = prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr).
    The formula is §2.18's rekey SKEYSEED with the additional exchange's shared secret; ``old`` is wiped."""
    skeyseed = rekey_skeyseed(old.prf_id, bytes(old.keys.sk_d), shared, ni, nr)
    new = ike_sa_crypto(spec, skeyseed, ni, nr, spi_i, spi_r, initiator, rng)
    old.wipe()
    return new


def restored_ike_sa_crypto(
    spec: ProposalSpec, keys: IkeKeys, initiator: bool, rng: RandomSource
) -> IkeSaCrypto:
    """The protectors of an IKE SA whose SK_* were derived on another node (HA takeover, docs/ha.md);
    takes ``keys`` over."""
    encr, integ = _one(spec)
    out, inb = make_sk_protectors(encr, integ, keys, initiator, rng)
    return IkeSaCrypto(proposal_prf(spec), keys, out, inb, encr, integ)


def restored_child_sa_keys(spec: ProposalSpec, keys: ChildKeys) -> ChildSaKeys:
    """A Child SA's algorithms around a KEYMAT split made on another node (HA takeover);
    takes ``keys`` over."""
    encr, integ = _one(spec)
    return ChildSaKeys(encr, integ, keys)
