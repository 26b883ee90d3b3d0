"""Proposal offer/selection glue between the wire SA payload and ``policy.proposals`` (RFC 7296 §2.7, §3.3).

The profile and the crypto registry decide what may be offered or selected; a responder's answer is accepted
only if it is exactly one of our proposals with one transform of each type.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from ikeguard.crypto import registry
from ikeguard.policy.profile import Profile
from ikeguard.policy.proposals import ProtocolName, allowed_offer, select_proposal
from ikeguard.wire.iana import IntegId, ProtocolId, TransformType
from ikeguard.wire.proposal_string import ProposalSpec, format_proposal
from ikeguard.wire.sa import SaPayload
from ikeguard.wire.transforms import Transform, is_ke_type

_CHOICES = "engine.choose_proposal"  # Profile.memo namespace
_CHOICES_LIMIT = 1024  # distinct (offer, configuration) pairs remembered; a flood of novel offers only misses


@lru_cache(maxsize=256)
def proposal_text(spec: ProposalSpec) -> str:
    """A negotiated proposal in swanctl syntax, memoized: every audit record of an SA carries it."""
    return format_proposal(spec)


def _implemented(t: Transform) -> bool:
    """Whether the engine can carry out ``t``. An additional key exchange (RFC 9370 ADDKE1..7) runs in
    IKE_INTERMEDIATE for the IKE SA (``tasks.ike_intermediate``) and in IKE_FOLLOWUP_KE after a
    CREATE_CHILD_SA (``tasks.followup_ke``), for any key exchange method the crypto registry has."""
    ttype = int(t.type)
    if TransformType.ADDKE1 <= ttype <= TransformType.ADDKE7:
        return t.id == 0 or registry.supports(TransformType.KE, t.id)
    if ttype == TransformType.ESN or (ttype in (TransformType.INTEG, TransformType.KE) and t.id == 0):
        return True
    if is_ke_type(ttype):
        ttype = TransformType.KE
    if ttype == TransformType.INTEG and t.id == IntegId.NONE:
        return True
    return registry.supports(ttype, t.id, t.key_length)


def _strip_ke(spec: ProposalSpec) -> ProposalSpec:
    return ProposalSpec(spec.protocol, spec.encr, spec.integ, spec.prf, (), spec.esn, ())


def offer_proposals(
    profile: Profile, configured: Sequence[ProposalSpec], protocol: ProtocolName, *, ignore_ke: bool = False
) -> tuple[ProposalSpec, ...]:
    """What an initiator may offer: configured, minus what the profile forbids or we cannot run."""
    supported = [t for spec in configured for t in spec.transforms() if _implemented(t)]
    offer = allowed_offer(configured, profile, supported, protocol=protocol, ignore_ke=ignore_ke)
    if ignore_ke:
        offer = tuple(_strip_ke(spec) for spec in offer)
    return offer


def choose_proposal(
    profile: Profile,
    offered: SaPayload,
    configured: Sequence[ProposalSpec],
    protocol: ProtocolName,
    *,
    ignore_ke: bool = False,
) -> tuple[ProposalSpec, int] | None:
    """Responder: (selected suite, proposal number) from the peer's SA payload, or None.

    Memoized per profile on what decides the answer (the offered proposals without their SPIs, our configured
    proposals, protocol, ``ignore_ke``): peers of one connection send the same offer in every message.
    """
    key = (
        protocol,
        ignore_ke,
        tuple((p.number, int(p.protocol), p.transforms) for p in offered.proposals),
        tuple(configured),
    )
    table = profile.memo.get(_CHOICES)
    if table is not None and key in table:
        cached: tuple[ProposalSpec, int] | None = table[key]
        return cached
    choice = uncached_choose_proposal(profile, offered, configured, protocol, ignore_ke=ignore_ke)
    profile.memo_put(_CHOICES, key, choice, limit=_CHOICES_LIMIT)
    return choice


def uncached_choose_proposal(
    profile: Profile,
    offered: SaPayload,
    configured: Sequence[ProposalSpec],
    protocol: ProtocolName,
    *,
    ignore_ke: bool = False,
) -> tuple[ProposalSpec, int] | None:
    """:func:`choose_proposal` computed (what its memo holds; tests compare the two)."""
    expected = ProtocolId.IKE if protocol == "ike" else ProtocolId.ESP
    specs: list[ProposalSpec] = []
    numbers: list[int] = []
    for proposal in offered.proposals:
        if int(proposal.protocol) != expected:
            continue
        try:
            spec = proposal.to_spec()
        except ValueError:
            continue
        specs.append(spec)
        numbers.append(proposal.number)
    supported = [t for spec in specs for t in spec.transforms() if _implemented(t)]
    choice = select_proposal(specs, configured, profile, supported, protocol=protocol, ignore_ke=ignore_ke)
    if choice is None:
        return None
    return choice.spec(protocol), numbers[choice.offered_index]


def accept_response_proposal(
    answer: SaPayload, offered: Sequence[ProposalSpec], protocol: ProtocolId
) -> tuple[ProposalSpec, bytes] | None:
    """Initiator: the responder's single proposal when it picks one transform per type from one we offered."""
    if len(answer.proposals) != 1:
        return None
    proposal = answer.proposals[0]
    if int(proposal.protocol) != protocol:
        return None
    try:
        spec = proposal.to_spec()
    except ValueError:
        return None
    chosen_types: dict[int, list[Transform]] = {}
    for t in spec.transforms():
        chosen_types.setdefault(int(t.type), []).append(t)
    if any(len(v) != 1 for v in chosen_types.values()):
        return None
    for ours in offered:
        ours_types: dict[int, set[Transform]] = {}
        for t in ours.transforms():
            ours_types.setdefault(int(t.type), set()).add(t)
        required = {k for k, v in ours_types.items() if not all(t.id == 0 for t in v)}
        if set(chosen_types) - set(ours_types):
            continue
        if not required <= set(chosen_types):
            continue
        if all(v[0] in ours_types[k] for k, v in chosen_types.items()):
            return spec, proposal.spi
    return None
