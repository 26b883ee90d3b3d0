"""RFC 9370 additional key exchanges in IKE_INTERMEDIATE (RFC 9242) between two in-memory engines.

Replaces the refusal of issue 25's defect (ADDKE transforms were never offered nor selected while the exchange
did not exist): now both sides negotiate ``ke1_mlkem768`` / ``ke1_mlkem1024``, run one IKE_INTERMEDIATE per
additional exchange with message IDs 1..n (IKE_AUTH after them), update every key after each (§2.2.2) and bind
the exchanges into AUTH (RFC 9242 §3.3.2). strongSwan 6.1 judges the same in
tests/interop/test_pq_strongswan61.py.
"""

from __future__ import annotations

import pytest

from ikeguard.engine.events import SendDatagram
from ikeguard.engine.proposals import choose_proposal, offer_proposals
from ikeguard.engine.states import IkeState
from ikeguard.policy.profile import load_profile
from ikeguard.wire.header import decode_header
from ikeguard.wire.iana import ExchangeType, ProtocolId, TransformType
from ikeguard.wire.proposal_string import parse_proposal
from ikeguard.wire.sa import Proposal, SaPayload
from tests.engine.harness import Network, child, mirror, pair, psk_conn

PQ768 = "aes256gcm16-prfsha384-ecp384-ke1_mlkem768"
PQ1024 = "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024"
PLAIN = "aes256gcm16-prfsha384-ecp384"


def _pq_pair(a_props: tuple[str, ...], b_props: tuple[str, ...], **kw: object) -> Network:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=a_props, **kw)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), ike_proposals=b_props, **kw)
    return pair([a], [b])


def _exchanges(net: Network) -> list[tuple[str, str, int, bool]]:
    out = []
    for side in (net.a, net.b):
        for e in side.events:
            if isinstance(e, SendDatagram):
                h = decode_header(e.data)[0]
                out.append((side.name, ExchangeType(int(h.exchange_type)).name, h.message_id, h.is_response))
    return out


@pytest.mark.parametrize("proposal", [PQ768, PQ1024])
def test_hybrid_ike_sa_runs_one_intermediate_exchange_and_establishes(proposal: str) -> None:
    net = _pq_pair((proposal,), (proposal,))
    net.initiate()
    net.run()
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.state is IkeState.ESTABLISHED and b_sa.state is IkeState.ESTABLISHED
    assert a_sa.proposal_text == proposal and b_sa.proposal_text == proposal
    kinds = {(name, mid, resp) for side, name, mid, resp in _exchanges(net)}
    assert ("IKE_INTERMEDIATE", 1, False) in kinds and ("IKE_INTERMEDIATE", 1, True) in kinds
    assert ("IKE_AUTH", 2, False) in kinds and ("IKE_AUTH", 2, True) in kinds
    # both sides derived the same keys after the update (the AUTH payloads verified with them)
    assert a_sa.crypto is not None and b_sa.crypto is not None
    assert bytes(a_sa.crypto.keys.sk_d) == bytes(b_sa.crypto.keys.sk_d)
    assert a_sa.intermediate is not None and a_sa.intermediate.done == 1
    assert a_sa.intermediate.int_auth_i == b_sa.intermediate.int_auth_i  # type: ignore[union-attr]
    assert net.b.installs() and net.a.installs()


def test_keys_change_with_the_additional_exchange() -> None:
    """The same seeds with and without ke1_: SK_d differs, so the ML-KEM secret went into the keys."""
    plain = _pq_pair((PLAIN,), (PLAIN,))
    plain.initiate()
    plain.run()
    hybrid = _pq_pair((PQ768,), (PQ768,))
    hybrid.initiate()
    hybrid.run()
    (p_sa,), (h_sa,) = plain.a.manager.ike_sas(), hybrid.a.manager.ike_sas()
    assert p_sa.state is h_sa.state is IkeState.ESTABLISHED
    assert p_sa.crypto is not None and h_sa.crypto is not None
    assert bytes(p_sa.crypto.keys.sk_d) != bytes(h_sa.crypto.keys.sk_d)


def test_initiator_offer_with_optional_addke_meets_a_plain_responder() -> None:
    """ke1_mlkem768-ke1_none is optional: a responder without ADDKE picks NONE, no IKE_INTERMEDIATE runs."""
    net = _pq_pair((PQ768 + "-ke1_none",), (PLAIN,))
    net.initiate()
    net.run()
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.state is IkeState.ESTABLISHED and b_sa.state is IkeState.ESTABLISHED
    assert not [x for x in _exchanges(net) if x[1] == "IKE_INTERMEDIATE"]


def test_required_addke_against_a_plain_responder_is_no_proposal_chosen() -> None:
    net = _pq_pair((PQ768,), (PLAIN,))
    net.initiate()
    net.run()
    (a_sa,) = net.a.manager.ike_sas() or (None,)
    assert a_sa is None or a_sa.state is IkeState.CLOSED
    assert net.a.audits("proposal.rejected")


def _offer(*texts: str) -> SaPayload:
    return SaPayload(tuple(Proposal(n, ProtocolId.IKE, b"", parse_proposal(t, ProtocolId.IKE).transforms())
                           for n, t in enumerate(texts, 1)))


def test_selection_and_offer_of_additional_key_exchanges() -> None:
    profile = load_profile("baseline")
    pq, plain = parse_proposal(PQ768, ProtocolId.IKE), parse_proposal(PLAIN, ProtocolId.IKE)
    chosen = choose_proposal(profile, _offer(PQ768), (pq, plain), "ike")
    assert chosen is not None and [int(t.id) for t in chosen[0].addke] == [36]
    # optional ADDKE (ke1_x-ke1_none) against a configuration without ADDKE: NONE is chosen (RFC 9370)
    optional = choose_proposal(profile, _offer(PQ768 + "-ke1_none"), (plain,), "ike")
    assert optional is not None
    assert [(int(t.type), int(t.id)) for t in optional[0].addke] == [(int(TransformType.ADDKE1), 0)]
    assert [spec.addke != () for spec in offer_proposals(profile, (pq, plain), "ike")] == [True, False]
    # an ESP proposal with ADDKE runs IKE_FOLLOWUP_KE (tests/engine/test_followup_ke.py): selectable
    esp = parse_proposal("aes256gcm16-ecp384-ke1_mlkem768", ProtocolId.ESP)
    offer = SaPayload((Proposal(1, ProtocolId.ESP, b"\x01\x02\x03\x04", esp.transforms()),))
    esp_choice = choose_proposal(profile, offer, (esp,), "esp")
    assert esp_choice is not None and [int(t.id) for t in esp_choice[0].addke] == [36]


def test_sas_json_names_the_key_exchanges() -> None:
    from ikeguard.control.vici_answers import algorithm_fields
    from ikeguard.engine.info import ike_sa_info

    net = _pq_pair((PQ768,), (PQ768,))
    net.initiate()
    net.run()
    (a_sa,) = net.a.manager.ike_sas()
    info = ike_sa_info(a_sa)
    assert info["key_exchanges"] == ["ECP_384", "ML_KEM_768"] and info["post_quantum"] is True
    assert info["children"][0]["key_exchanges"] == []  # the first Child SA has no KE of its own (IKE_AUTH)
    assert algorithm_fields(PQ768, ProtocolId.IKE)["ake1"] == "ML_KEM_768"  # vici list-sas, as strongSwan 6
    plain = _pq_pair((PLAIN,), (PLAIN,))
    plain.initiate()
    plain.run()
    assert ike_sa_info(plain.a.manager.ike_sas()[0])["post_quantum"] is False
