"""Proposal policy: which transforms a profile allows, and choosing/offering proposals on the wire.

One function decides whether a suite is acceptable under a profile (:func:`suite_violations`); config
load, responder selection (:func:`select_proposal`) and initiator offers (:func:`allowed_offer`) all call
it, so no algorithm list exists twice (the lists live in the profile data files).

"Strongest" (RFC 7296 §2.7 leaves the responder's choice local): among acceptable combinations the one
with the highest tuple (weakest-link security strength, KE strength, ADDKE strength, ENCR strength, PRF
strength, INTEG strength, AEAD) wins; strengths are SP 800-57 Pt 1 r5 bits (see ``_STRENGTH``); ties go
to the initiator's order, then ours.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Protocol

from ikeguard.wire.iana import EncrId, EsnId, IntegId, KeId, PrfId, ProtocolId, TransformType
from ikeguard.wire.proposal_string import ProposalSpec, parse_proposal
from ikeguard.wire.transforms import Transform, is_ke_type

if TYPE_CHECKING:
    from ikeguard.policy.profile import Profile, Rule

ProtocolName = Literal["ike", "esp"]
_VERDICTS = "policy.transform_violations"  # Profile.memo namespace

# Security strength in bits (NIST SP 800-57 Pt 1 r5 Tables 2/3; HMAC/PRF = half the hash output for
# collision-relevant uses; ML-KEM per FIPS 203 categories). Used only to rank, never to allow.
_STRENGTH: dict[tuple[int, int], int] = {
    **{(1, int(e)): s for e, s in ((EncrId.TRIPLE_DES, 112), (EncrId.DES, 56), (EncrId.NULL, 0),
                                    (EncrId.CHACHA20_POLY1305, 256))},
    **{(2, int(p)): s for p, s in ((PrfId.HMAC_MD5, 64), (PrfId.HMAC_SHA1, 80), (PrfId.AES128_XCBC, 128),
                                    (PrfId.AES128_CMAC, 128), (PrfId.HMAC_SHA2_256, 128),
                                    (PrfId.HMAC_SHA2_384, 192), (PrfId.HMAC_SHA2_512, 256))},
    **{(3, int(i)): s for i, s in ((IntegId.HMAC_MD5_96, 64), (IntegId.HMAC_SHA1_96, 80),
                                    (IntegId.AES_XCBC_96, 96), (IntegId.AES_CMAC_96, 96),
                                    (IntegId.HMAC_SHA2_256_128, 128), (IntegId.HMAC_SHA2_384_192, 192),
                                    (IntegId.HMAC_SHA2_512_256, 256))},
    **{(4, int(k)): s for k, s in ((KeId.MODP_768, 56), (KeId.MODP_1024, 80), (KeId.MODP_1536, 96),
                                    (KeId.MODP_2048, 112), (KeId.MODP_3072, 128), (KeId.MODP_4096, 152),
                                    (KeId.MODP_6144, 176), (KeId.MODP_8192, 200), (KeId.ECP_256, 128),
                                    (KeId.ECP_384, 192), (KeId.ECP_521, 256), (KeId.MODP_1024_160, 80),
                                    (KeId.MODP_2048_224, 112), (KeId.MODP_2048_256, 112),
                                    (KeId.ECP_192, 96), (KeId.ECP_224, 112), (KeId.BRAINPOOL_P224R1, 112),
                                    (KeId.BRAINPOOL_P256R1, 128), (KeId.BRAINPOOL_P384R1, 192),
                                    (KeId.BRAINPOOL_P512R1, 256), (KeId.CURVE25519, 128),
                                    (KeId.CURVE448, 224), (KeId.ML_KEM_512, 128), (KeId.ML_KEM_768, 192),
                                    (KeId.ML_KEM_1024, 256))},
}


def strength(transform: Transform) -> int:
    """Security strength in bits of one transform (0 for NONE/unknown)."""
    t = int(transform.type)
    if t == TransformType.ENCR and transform.key_length is not None and transform.id != EncrId.TRIPLE_DES:
        return transform.key_length
    key_type = int(TransformType.KE) if is_ke_type(t) else t
    return _STRENGTH.get((key_type, transform.id), 0)


def _protocol_id(protocol: ProtocolName) -> ProtocolId:
    return ProtocolId.IKE if protocol == "ike" else ProtocolId.ESP


@lru_cache(maxsize=4096)
def parse_configured(text: str, protocol: ProtocolName) -> ProposalSpec:
    """Parse a configured proposal string (cached: the same strings repeat across connections)."""
    return parse_proposal(text, _protocol_id(protocol))


def validate_ike_proposal(text: str) -> str:
    """Pydantic hook for ``proposals``: the wire parser's message on a syntax error."""
    parse_configured(text, "ike")
    return text


def validate_esp_proposal(text: str) -> str:
    """Pydantic hook for ``esp_proposals``."""
    parse_configured(text, "esp")
    return text


class ProposalLike(Protocol):
    """What selection needs from an offered or configured proposal (``wire`` ProposalSpec fits)."""

    def transforms(self) -> tuple[Transform, ...]: ...


@dataclass(frozen=True)
class SuiteViolation:
    """One reason a (candidate) suite is not acceptable under a profile."""

    rule: Rule
    transform: Transform | None
    message: str
    warning: bool = False


def transform_violations(profile: Profile, protocol: ProtocolName,
                         transform: Transform) -> list[SuiteViolation]:
    """Violations (and sunset warnings) of one transform against the profile's ``transforms`` rules
    (memoized per profile: the rules are immutable, and every message asks again for the same transforms)."""
    table = profile.memo.get(_VERDICTS)
    key = (protocol, transform)
    cached = table.get(key) if table is not None else None
    if cached is None:
        cached = tuple(uncached_transform_violations(profile, protocol, transform))
        profile.memo_put(_VERDICTS, key, cached)
    return list(cached)


def transform_forbidden(profile: Profile, protocol: ProtocolName, transform: Transform) -> bool:
    """Whether the profile forbids ``transform`` (a violation that is not only a sunset warning)."""
    return any(not v.warning for v in transform_violations(profile, protocol, transform))


def uncached_transform_violations(profile: Profile, protocol: ProtocolName,
                                  transform: Transform) -> list[SuiteViolation]:
    """:func:`transform_violations` computed from the rules (what the memo holds; tests compare the two)."""
    out: list[SuiteViolation] = []
    for tr in profile.transform_rules:
        if not tr.covers(protocol, transform):
            continue
        if not tr.is_allowed(transform):
            out.append(SuiteViolation(tr.rule, transform,
                                      f"{transform.describe()} is not allowed for {protocol.upper()}"))
        else:
            note = tr.warning(transform)
            if note:
                message = f"{transform.describe()}: {note}"
                out.append(SuiteViolation(tr.rule, transform, message, warning=True))
    return out


def suite_violations(profile: Profile, protocol: ProtocolName, transforms: Sequence[Transform], *,
                     ignore_ke: bool = False) -> list[SuiteViolation]:
    """Everything wrong with one concrete suite (one transform per type) or a configured proposal.

    Covers the per-transform lists, AEAD/integrity pairing (RFC 8221 §4, RFC 5282 §8) and required
    additional key exchanges (RFC 9370). ``ignore_ke`` is for Child SAs created in IKE_AUTH, which carry
    no KE (RFC 7296 §1.2).
    """
    out: list[SuiteViolation] = []
    for t in transforms:
        if ignore_ke and is_ke_type(int(t.type)):
            continue
        out.extend(transform_violations(profile, protocol, t))
    encr = [t for t in transforms if int(t.type) == TransformType.ENCR]
    integ = [t for t in transforms if int(t.type) == TransformType.INTEG and t.id != IntegId.NONE]
    for rule in profile.rules_for("aead_integrity"):
        for e in encr:
            if not e.is_aead and not integ and e.id != EncrId.NULL_AUTH_AES_GMAC:
                out.append(SuiteViolation(rule, e, f"{e.describe()} without an integrity algorithm"))
            if e.id == EncrId.NULL and protocol == "esp":
                out.append(SuiteViolation(rule, e, "ENCR_NULL gives no confidentiality"))
    if not ignore_ke:
        addke = {t.id for t in transforms if is_ke_type(int(t.type)) and int(t.type) != TransformType.KE}
        for rule in profile.rules_for("addke_required"):
            if rule.params.get("protocol", protocol) != protocol:
                continue
            required = {int(KeId[n]) for n in rule.params["any_of"]}
            if not addke & required:
                names = ", ".join(sorted(rule.params["any_of"]))
                out.append(SuiteViolation(rule, None, f"no additional key exchange from {names}"))
    return out


@dataclass(frozen=True)
class ProposalChoice:
    """The selected suite: which offered proposal (index and number) and one transform per type."""

    offered_index: int
    proposal_number: int | None
    transforms: tuple[Transform, ...]
    rank: tuple[int, ...]

    def spec(self, protocol: ProtocolName) -> ProposalSpec:
        """The choice as a wire ProposalSpec (one transform per type)."""
        return ProposalSpec.from_transforms(_protocol_id(protocol), self.transforms)


def _key(t: Transform) -> tuple[int, int, int | None]:
    tt = int(t.type)
    return (int(TransformType.KE) if is_ke_type(tt) else tt, t.id, t.key_length)


Supported = Collection[Transform] | Callable[[Transform], bool] | None
"""What the implementation can do: a set of transforms, a predicate (e.g. wrapping
``ikeguard.crypto.registry.supports`` plus the data plane's capability), or None for no restriction."""


def _supported(t: Transform, supported: Supported) -> bool:
    if supported is None or (int(t.type) in (TransformType.INTEG, TransformType.KE) and t.id == 0):
        return True
    if int(t.type) == TransformType.ESN:
        return True
    if callable(supported):
        return supported(t)
    return _key(t) in {_key(s) for s in supported}


def _by_type(transforms: Sequence[Transform]) -> dict[int, list[Transform]]:
    groups: dict[int, list[Transform]] = {}
    for t in transforms:
        groups.setdefault(int(t.type), []).append(t)
    return groups


def _rank(chosen: Sequence[Transform]) -> tuple[int, ...]:
    def best(*types: int) -> int:
        values = [strength(t) for t in chosen if int(t.type) in types]
        return max(values) if values else 0

    security = [strength(t) for t in chosen if int(t.type) != TransformType.ESN
                and not (int(t.type) == TransformType.INTEG and t.id == 0)]
    addke_types = tuple(range(TransformType.ADDKE1, TransformType.ADDKE7 + 1))
    aead = int(any(t.is_aead for t in chosen))
    return (min(security) if security else 0, best(TransformType.KE), best(*addke_types),
            best(TransformType.ENCR), best(TransformType.PRF), best(TransformType.INTEG), aead)


def _match(offer: Sequence[Transform], configured: Sequence[Transform], profile: Profile,
           protocol: ProtocolName, supported: Supported,
           ignore_ke: bool) -> tuple[Transform, ...] | None:
    offer_types, conf_types = _by_type(offer), _by_type(configured)
    chosen: list[Transform] = []
    types = sorted(set(offer_types) | set(conf_types))
    for t in types:
        if ignore_ke and is_ke_type(t):
            continue
        offered = offer_types.get(t, [])
        wanted = conf_types.get(t, [])
        if t == TransformType.ESN:
            choice = _choose_esn(offered, wanted)
            if choice is None:
                return None
            chosen.append(choice)
            continue
        if t == TransformType.INTEG and chosen and all(c.is_aead for c in chosen
                                                       if int(c.type) == TransformType.ENCR):
            # RFC 5282 §8: with an AEAD cipher INTEG is NONE or absent
            if any(o.id != IntegId.NONE for o in offered) and not any(o.id == IntegId.NONE for o in offered):
                return None
            continue
        if TransformType.ADDKE1 <= t <= TransformType.ADDKE7:
            # RFC 9370 §2.2.2: NONE among the offered ADDKE transforms makes it optional; without it
            # configured (or with NONE configured) the responder picks NONE, and a configuration whose
            # optional ADDKE the peer did not offer at all goes without it.
            if not offered and (not wanted or any(w.id == 0 for w in wanted)):
                continue
            if not wanted and any(o.id == 0 for o in offered):
                chosen.append(next(o for o in offered if o.id == 0))
                continue
        wanted_keys = {_key(w) for w in wanted}
        candidates = [o for o in offered if _key(o) in wanted_keys and _supported(o, supported)
                      and not transform_forbidden(profile, protocol, o)]
        if not candidates:
            return None
        chosen.append(max(candidates, key=lambda c: (strength(c), -offered.index(c))))
    if any(not v.warning for v in suite_violations(profile, protocol, chosen, ignore_ke=ignore_ke)):
        return None
    return tuple(chosen)


def _choose_esn(offered: Sequence[Transform], wanted: Sequence[Transform]) -> Transform | None:
    offered_ids = [o.id for o in offered]
    wanted_ids = [w.id for w in wanted] or [EsnId.NO_ESN, EsnId.ESN]
    if not offered:
        return Transform(TransformType.ESN, EsnId.NO_ESN)
    for o in offered:
        if o.id in wanted_ids:
            return o
    del offered_ids
    return None


def select_proposal(offered: Sequence[ProposalLike], configured: Sequence[ProposalLike], profile: Profile,
                    supported: Supported, *, protocol: ProtocolName = "ike",
                    ignore_ke: bool = False) -> ProposalChoice | None:
    """Responder: the strongest acceptable suite from ``offered`` (RFC 7296 §2.7), or None
    (NO_PROPOSAL_CHOSEN). A transform the profile forbids is never chosen, even if configured;
    ``supported`` (None = no restriction) is what the crypto registry / data plane can do."""
    best: ProposalChoice | None = None
    for index, offer in enumerate(offered):
        for conf in configured:
            chosen = _match(offer.transforms(), conf.transforms(), profile, protocol, supported, ignore_ke)
            if chosen is None:
                continue
            rank = _rank(chosen)
            if best is None or rank > best.rank:
                number = getattr(offer, "number", None)
                best = ProposalChoice(index, number if isinstance(number, int) else index + 1, chosen, rank)
    return best


def allowed_offer(configured: Sequence[ProposalSpec], profile: Profile,
                  supported: Supported, *, protocol: ProtocolName = "ike",
                  ignore_ke: bool = False) -> tuple[ProposalSpec, ...]:
    """Initiator: the configured proposals with every forbidden or unsupported transform removed;
    proposals left without a needed type, or failing a suite rule, are dropped entirely."""
    result: list[ProposalSpec] = []
    for spec in configured:
        kept = [t for t in spec.transforms()
                if (ignore_ke and is_ke_type(int(t.type)))
                or (_supported(t, supported)
                    and not transform_forbidden(profile, protocol, t))]
        before, after = _by_type(spec.transforms()), _by_type(kept)
        if set(before) != set(after):
            continue
        if any(not v.warning for v in suite_violations(profile, protocol, kept, ignore_ke=ignore_ke)):
            continue
        result.append(ProposalSpec.from_transforms(spec.protocol, kept))
    return tuple(result)
