"""Proposal selection on the wire uses the same rules as config load: a responder never selects a
forbidden transform even if configured, an initiator never offers one, the strongest suite wins."""

from __future__ import annotations

import pytest

from ikeguard.policy.profile import available_profiles, load_profile
from ikeguard.policy.proposals import allowed_offer, select_proposal, suite_violations
from ikeguard.wire.iana import EncrId, KeId, ProtocolId, TransformType
from ikeguard.wire.proposal_string import ProposalSpec, format_proposal, parse_proposal
from ikeguard.wire.transforms import Transform

PCI = load_profile("pci-dss-4")


def ike(*texts: str) -> list[ProposalSpec]:
    return [parse_proposal(t, ProtocolId.IKE) for t in texts]


def esp(*texts: str) -> list[ProposalSpec]:
    return [parse_proposal(t, ProtocolId.ESP) for t in texts]


def chosen_text(choice: object, protocol: str = "ike") -> str:
    assert choice is not None
    return format_proposal(choice.spec(protocol))  # type: ignore[attr-defined]


def test_responder_never_selects_a_forbidden_transform_even_if_configured() -> None:
    configured = ike("3des-aes256-sha256-modp1024-ecp384")
    offered = ike("3des-sha256-modp1024", "aes256-sha256-ecp384")
    choice = select_proposal(offered, configured, PCI, None)
    assert choice is not None and choice.offered_index == 1
    assert {t.id for t in choice.transforms if t.type == TransformType.ENCR} == {EncrId.AES_CBC}
    assert select_proposal(ike("3des-sha256-modp1024"), configured, PCI, None) is None


def test_mixed_offer_picks_the_strongest_allowed_suite() -> None:
    configured = ike("aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-ecp384-modp2048")
    offered = ike("aes128gcm16-prfsha256-modp2048",
                  "aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-ecp384")
    choice = select_proposal(offered, configured, PCI, None)
    assert chosen_text(choice) == "aes256gcm16-prfsha384-ecp384"
    assert choice is not None and choice.proposal_number == 2


def test_unsupported_transforms_are_not_selected_nor_offered() -> None:
    configured = ike("aes256gcm16-chacha20poly1305-prfsha384-ecp384")
    supported = {Transform(TransformType.ENCR, EncrId.CHACHA20_POLY1305),
                 Transform(TransformType.PRF, 6), Transform(TransformType.KE, KeId.ECP_384)}
    choice = select_proposal(configured, configured, PCI, supported)
    assert chosen_text(choice) == "chacha20poly1305-prfsha384-ecp384"
    (offer,) = allowed_offer(configured, PCI, supported)
    assert format_proposal(offer) == "chacha20poly1305-prfsha384-ecp384"


def test_initiator_offer_drops_forbidden_transforms_and_empty_proposals() -> None:
    configured = ike("aes256-3des-sha384-md5-prfsha384-prfmd5-ecp384-modp1024", "3des-md5-modp1024")
    (offer,) = allowed_offer(configured, PCI, None)
    assert format_proposal(offer) == "aes256-sha384-ecp384"
    assert [t.id for t in offer.prf] == [6]  # PRF_HMAC_SHA2_384 kept, PRF_HMAC_MD5 dropped


def test_esp_pfs_required_by_configuration_and_ignored_in_ike_auth() -> None:
    configured = esp("aes256gcm16-ecp384")
    assert select_proposal(esp("aes256gcm16"), configured, PCI, None, protocol="esp") is None
    choice = select_proposal(esp("aes256gcm16"), configured, PCI, None, protocol="esp", ignore_ke=True)
    assert chosen_text(choice, "esp") == "aes256gcm16"
    choice = select_proposal(esp("aes256gcm16-ecp384"), configured, PCI, None, protocol="esp")
    assert chosen_text(choice, "esp") == "aes256gcm16-ecp384"


def test_cnsa2_requires_mlkem_1024_on_the_wire() -> None:
    cnsa2 = load_profile("cnsa-2")
    configured = ike("aes256gcm16-prfsha384-ecp384-ke1_mlkem1024", "aes256gcm16-prfsha384-ecp384")
    assert allowed_offer(configured, cnsa2, None) == tuple(configured[:1])
    assert select_proposal(ike("aes256gcm16-prfsha384-ecp384"), configured, cnsa2, None) is None
    choice = select_proposal(configured[:1], configured, cnsa2, None)
    assert chosen_text(choice) == "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024"


PAYMENT_IKE = "aes256gcm16-prfsha384-ecp384"
PAYMENT_ESP = "aes256gcm16-ecp384"


@pytest.mark.parametrize("name", available_profiles())
def test_payment_processor_suite_passes_every_profile_that_allows_it(name: str) -> None:
    profile = load_profile(name)
    errors = [v for v in suite_violations(profile, "ike", ike(PAYMENT_IKE)[0].transforms()) if not v.warning]
    errors += [v for v in suite_violations(profile, "esp", esp(PAYMENT_ESP)[0].transforms()) if not v.warning]
    if name in ("cnsa-2", "pq-hybrid"):  # both demand ML-KEM: the classical suite is not enough
        assert {v.rule.id for v in errors} == {"crypto.addke-required"}
        return
    assert errors == []
    assert select_proposal(ike(PAYMENT_IKE), ike(PAYMENT_IKE), profile, None) is not None
    assert select_proposal(esp(PAYMENT_ESP), esp(PAYMENT_ESP), profile, None, protocol="esp") is not None


def test_supported_may_be_a_predicate_over_the_crypto_registry() -> None:
    from ikeguard.crypto import registry

    def esp_userspace(t: Transform) -> bool:
        key_bits = t.key_length if int(t.type) == TransformType.ENCR else None
        return registry.supports(int(t.type), t.id, key_bits)

    configured = esp("aes256gcm16-ecp384")
    choice = select_proposal(configured, configured, PCI, esp_userspace, protocol="esp")
    assert chosen_text(choice, "esp") == "aes256gcm16-ecp384"
    assert select_proposal(configured, configured, PCI, lambda t: False, protocol="esp") is None
