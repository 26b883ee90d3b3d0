"""The profile's memoized decisions equal the computed ones: per transform (``transform_violations``) and per
offer (``engine.proposals.choose_proposal``), for arbitrary transforms and offers, in any order, under every
shipped profile; the memo is bounded (peers choose what they offer)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ikeguard.engine.proposals import choose_proposal, proposal_text, uncached_choose_proposal
from ikeguard.policy.profile import available_profiles, load_profile
from ikeguard.policy.proposals import transform_violations, uncached_transform_violations
from ikeguard.wire.iana import EncrId, IntegId, KeId, PrfId, ProtocolId, TransformType
from ikeguard.wire.proposal_string import format_proposal, parse_proposal
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.transforms import Transform

PROFILES = [load_profile(name) for name in available_profiles()]
_KNOWN = {
    int(TransformType.ENCR): [int(e) for e in EncrId],
    int(TransformType.PRF): [int(p) for p in PrfId],
    int(TransformType.INTEG): [int(i) for i in IntegId],
    int(TransformType.KE): [int(k) for k in KeId],
    int(TransformType.ESN): [0, 1],
}
_TYPES = [*_KNOWN, *range(int(TransformType.ADDKE1), int(TransformType.ADDKE7) + 1)]


@st.composite
def transforms(draw: st.DrawFn) -> Transform:
    """Mostly known (type, id) pairs with plausible key lengths, sometimes anything a peer could send."""
    ttype = draw(st.sampled_from(_TYPES) | st.integers(0, 255))
    known = _KNOWN.get(ttype, _KNOWN[int(TransformType.KE)] if ttype in _TYPES else [])
    ident = draw(st.sampled_from(known) | st.integers(0, 0xFFFF)) if known else draw(st.integers(0, 0xFFFF))
    key_length = draw(st.sampled_from([None, None, 128, 192, 256]) | st.integers(0, 0xFFFF))
    as_enum = draw(st.booleans()) and ttype in set(int(t) for t in TransformType)
    return Transform(TransformType(ttype) if as_enum else ttype, ident, key_length)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(profile=st.sampled_from(PROFILES), protocol=st.sampled_from(["ike", "esp"]),
       items=st.lists(transforms(), min_size=1, max_size=6))
def test_memoized_transform_verdict_equals_the_computed_one(profile, protocol, items) -> None:  # type: ignore[no-untyped-def]
    for t in items:  # first call may fill the memo, the second reads it; both equal the computation
        expected = uncached_transform_violations(profile, protocol, t)
        assert transform_violations(profile, protocol, t) == expected
        assert transform_violations(profile, protocol, t) == expected


_CONFIGURED = {
    "ike": [parse_proposal(t, ProtocolId.IKE) for t in (
        "aes128gcm16-prfsha256-ecp256", "aes256gcm16-prfsha384-ecp384-modp2048",
        "aes256-sha384-prfsha384-ecp384", "chacha20poly1305-prfsha256-x25519", "aes128-sha1-modp1024",
        "aes256gcm16-prfsha384-ecp384-ke1_mlkem768")],
    "esp": [parse_proposal(t, ProtocolId.ESP) for t in (
        "aes128gcm16", "aes256gcm16-ecp384", "aes256-sha384-esn", "aes128-sha1-noesn", "null-sha256")],
}


@st.composite
def offers(draw: st.DrawFn, protocol: str) -> SaPayload:
    """An SA payload: configured-looking proposals mixed with arbitrary transforms, any SPI."""
    pid = ProtocolId.IKE if protocol == "ike" else ProtocolId.ESP
    proposals = []
    for number in range(1, draw(st.integers(1, 4)) + 1):
        base = list(draw(st.sampled_from(_CONFIGURED[protocol])).transforms())
        extra = draw(st.lists(transforms(), max_size=3))
        mixed = draw(st.permutations(base + extra))
        spi = draw(st.binary(min_size=0, max_size=8))
        proto = draw(st.sampled_from([pid, pid, ProtocolId.AH]))
        proposals.append(Proposal(number, proto, spi, tuple(mixed[:20])))
    return SaPayload(tuple(proposals))


@settings(max_examples=150, derandomize=True, deadline=None)
@given(data=st.data(), profile=st.sampled_from(PROFILES), protocol=st.sampled_from(["ike", "esp"]),
       ignore_ke=st.booleans())
def test_memoized_choice_equals_the_computed_one(data, profile, protocol, ignore_ke) -> None:  # type: ignore[no-untyped-def]
    configured = data.draw(st.lists(st.sampled_from(_CONFIGURED[protocol]), min_size=1, max_size=3))
    offered = data.draw(st.lists(offers(protocol), min_size=1, max_size=3))
    for sa in offered + offered:  # each offer twice: a miss then a hit
        expected = uncached_choose_proposal(profile, sa, configured, protocol, ignore_ke=ignore_ke)
        assert choose_proposal(profile, sa, configured, protocol, ignore_ke=ignore_ke) == expected
        event("chosen" if expected is not None else "refused")
    # the same transforms under other SPIs give the same answer (SPIs are not part of the decision)
    respun = SaPayload(tuple(dataclasses.replace(p, spi=b"\x01\x02\x03\x04") for p in offered[0].proposals))
    assert choose_proposal(profile, respun, configured, protocol, ignore_ke=ignore_ke) == \
        uncached_choose_proposal(profile, respun, configured, protocol, ignore_ke=ignore_ke)


def test_a_forbidden_offer_stays_refused_once_memoized() -> None:
    pci = load_profile("pci-dss-4")
    weak = SaPayload((Proposal(1, ProtocolId.IKE, b"", parse_proposal("aes128-sha1-modp1024", ProtocolId.IKE)
                               .transforms()),))
    configured = [parse_proposal("aes128-sha1-modp1024", ProtocolId.IKE)]  # configured, yet forbidden
    assert choose_proposal(pci, weak, configured, "ike") is None
    assert choose_proposal(pci, weak, configured, "ike") is None
    baseline_choice = uncached_choose_proposal(load_profile("baseline"), weak, configured, "ike")
    if baseline_choice is not None:  # another profile's memo is its own
        assert choose_proposal(load_profile("baseline"), weak, configured, "ike") == baseline_choice


def test_memo_namespace_is_bounded() -> None:
    profile = dataclasses.replace(load_profile("baseline"))
    assert profile.memo == {}  # a copy starts with its own, empty memo
    for i in range(50):
        profile.memo_put("ns", i, i, limit=16)
    assert 0 < len(profile.memo["ns"]) <= 16 and profile.memo["ns"][49] == 49


@settings(max_examples=100, derandomize=True, deadline=None)
@given(sa=offers("ike") | offers("esp"))
def test_memoized_proposal_text_equals_format_proposal(sa: SaPayload) -> None:
    for proposal in sa.proposals:
        try:
            spec = proposal.to_spec()
        except ValueError:
            continue
        try:
            expected = format_proposal(spec)
        except ValueError:  # no swanctl keyword (never negotiated): the memoized form raises alike
            with pytest.raises(ValueError):
                proposal_text(spec)
            continue
        assert proposal_text(spec) == expected
        assert proposal_text(spec) == expected
