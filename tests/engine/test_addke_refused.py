"""Issue 25's defect: a proposal the engine cannot carry out is never offered nor selected. RFC 9370
additional key exchanges need IKE_INTERMEDIATE (RFC 9242), not implemented yet: a responder that echoed ADDKE1
without it made strongSwan 6.1 abort ("peer didn't send INTERMEDIATE_EXCHANGE_SUPPORTED while accepting
multiple key exchanges")."""

from __future__ import annotations

from ikeguard.engine.proposals import choose_proposal, offer_proposals
from ikeguard.policy.profile import load_profile
from ikeguard.wire.iana import ProtocolId, TransformType
from ikeguard.wire.proposal_string import parse_proposal
from ikeguard.wire.sa import Proposal, SaPayload

PQ = "aes256gcm16-prfsha384-ecp384-ke1_mlkem768"
PLAIN = "aes256gcm16-prfsha384-ecp384"


def _offer(*texts: str) -> SaPayload:
    return SaPayload(tuple(Proposal(n, ProtocolId.IKE, b"", parse_proposal(t, ProtocolId.IKE).transforms())
                           for n, t in enumerate(texts, 1)))


def test_a_proposal_requiring_an_additional_key_exchange_is_not_selected() -> None:
    profile = load_profile("baseline")
    configured = (parse_proposal(PQ, ProtocolId.IKE), parse_proposal(PLAIN, ProtocolId.IKE))
    assert choose_proposal(profile, _offer(PQ), configured, "ike") is None  # NO_PROPOSAL_CHOSEN
    chosen = choose_proposal(profile, _offer(PQ, PLAIN), configured, "ike")
    assert chosen is not None
    spec, number = chosen
    assert number == 2 and not spec.addke
    assert all(not TransformType.ADDKE1 <= int(t.type) <= TransformType.ADDKE7 for t in spec.transforms())


def test_an_initiator_never_offers_an_additional_key_exchange() -> None:
    profile = load_profile("baseline")
    configured = (parse_proposal(PQ, ProtocolId.IKE), parse_proposal(PLAIN, ProtocolId.IKE))
    offered = offer_proposals(profile, configured, "ike")
    assert [spec.addke for spec in offered] == [()]
