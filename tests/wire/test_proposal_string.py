"""swanctl proposal strings: strongSwan's keywords and completion rules, canonical printing, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.wire.iana import EncrId, EsnId, IntegId, KeId, PrfId, ProtocolId, TransformType
from ikeguard.wire.proposal_string import (
    KEYWORDS,
    ProposalSpec,
    ProposalSyntaxError,
    describe_proposal,
    format_proposal,
    parse_proposal,
    parse_proposals,
)
from ikeguard.wire.transforms import Transform

IKE, ESP, AH = ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH
T = TransformType


def test_example_config_ike_proposal_parses_to_the_expected_transforms() -> None:
    spec = parse_proposal("aes256gcm16-prfsha384-ecp384", IKE)
    assert spec.encr == (Transform(T.ENCR, EncrId.AES_GCM_16, 256),)
    assert spec.prf == (Transform(T.PRF, PrfId.HMAC_SHA2_384),)
    assert spec.integ == ()
    assert spec.ke == (Transform(T.KE, KeId.ECP_384),)
    assert spec.esn == ()
    assert spec.is_aead
    assert describe_proposal(spec) == "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384"
    assert format_proposal(spec) == "aes256gcm16-prfsha384-ecp384"


def test_esp_without_esn_keyword_defaults_to_no_esn() -> None:
    spec = parse_proposal("aes256gcm16-ecp384", ESP)
    assert spec.esn == (Transform(T.ESN, EsnId.NO_ESN),)
    assert spec.ke == (Transform(T.KE, KeId.ECP_384),)
    assert format_proposal(spec) == "aes256gcm16-ecp384"
    assert describe_proposal(spec) == "AES_GCM_16-256/ECP_384"


def test_esp_with_both_esn_choices_keeps_them_in_order() -> None:
    spec = parse_proposal("aes128-sha256-esn-noesn", ESP)
    assert spec.esn == (Transform(T.ESN, EsnId.ESN), Transform(T.ESN, EsnId.NO_ESN))
    assert format_proposal(spec) == "aes128-sha256-esn-noesn"
    assert describe_proposal(spec) == "AES_CBC-128/HMAC_SHA2_256_128/ESN/NO_ESN"


def test_ike_prf_is_taken_from_integrity_when_not_named() -> None:
    spec = parse_proposal("aes256-sha384-x25519", IKE)
    assert spec.integ == (Transform(T.INTEG, IntegId.HMAC_SHA2_384_192),)
    assert spec.prf == (Transform(T.PRF, PrfId.HMAC_SHA2_384),)
    assert spec.ke == (Transform(T.KE, KeId.CURVE25519),)
    assert format_proposal(spec) == "aes256-sha384-x25519"
    assert describe_proposal(spec) == "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/CURVE_25519"


def test_ike_prf_derivation_follows_every_integrity_algorithm() -> None:
    spec = parse_proposal("aes128-sha256-aesxcbc-sha1-modp2048", IKE)
    assert [p.id for p in spec.prf] == [PrfId.HMAC_SHA2_256, PrfId.AES128_XCBC, PrfId.HMAC_SHA1]


def test_explicit_prf_is_kept_and_printed() -> None:
    spec = parse_proposal("aes128-sha256-prfsha512-ecp256", IKE)
    assert spec.prf == (Transform(T.PRF, PrfId.HMAC_SHA2_512),)
    assert format_proposal(spec) == "aes128-sha256-prfsha512-ecp256"


def test_aead_ike_proposal_without_prf_is_refused_with_the_reason() -> None:
    with pytest.raises(ProposalSyntaxError) as err:
        parse_proposal("aes256gcm16-ecp384", IKE)
    assert "PRF is mandatory" in str(err.value)
    assert err.value.keyword == "aes256gcm16"
    assert err.value.position == 0
    assert "prfsha384" in err.value.suggestions


def test_aead_ike_proposal_with_integrity_keyword_derives_prf_then_drops_integrity() -> None:
    # strongSwan: the PRF comes from sha384 before the AEAD cipher removes the integrity transform.
    spec = parse_proposal("aes256gcm16-sha384-ecp384", IKE)
    assert spec.integ == ()
    assert spec.prf == (Transform(T.PRF, PrfId.HMAC_SHA2_384),)
    assert format_proposal(spec) == "aes256gcm16-prfsha384-ecp384"


def test_mixing_aead_and_classic_ciphers_is_an_error_naming_the_second_kind() -> None:
    text = "aes256-aes256gcm16-sha256-ecp256"
    with pytest.raises(ProposalSyntaxError) as err:
        parse_proposal(text, IKE)
    assert err.value.keyword == "aes256gcm16"
    assert err.value.position == text.index("aes256gcm16")
    assert "AEAD" in str(err.value)
    with pytest.raises(ProposalSyntaxError):
        parse_proposal("aes128gcm16-aes128", ESP)


def test_unknown_keyword_names_keyword_position_and_closest_matches() -> None:
    text = "aes256-sha384-ecp348"
    with pytest.raises(ProposalSyntaxError) as err:
        parse_proposal(text, IKE)
    e = err.value
    assert isinstance(e, ValueError)
    assert e.keyword == "ecp348"
    assert e.position == 14
    assert "ecp384" in e.suggestions
    assert "'ecp348'" in str(e) and "position 14" in str(e) and "ecp384" in str(e)


def test_hopeless_keyword_lists_the_valid_keywords_by_category() -> None:
    with pytest.raises(ProposalSyntaxError) as err:
        parse_proposal("zzzzzz-sha256-ecp256", IKE)
    text = str(err.value)
    assert "encryption:" in text and "aes256gcm16" in text and "key exchange:" in text


@pytest.mark.parametrize(
    ("text", "protocol", "message"),
    [
        ("aes256--sha256-ecp256", IKE, "empty"),
        ("aes256-sha256", IKE, "key exchange method is mandatory"),
        ("aes256-sha256-none", IKE, "key exchange method is mandatory"),
        ("aes256-ecp256", IKE, "integrity algorithm is mandatory"),
        ("sha256-ecp256", IKE, "encryption algorithm is mandatory"),
        ("sha256", ESP, "encryption algorithm is mandatory"),
        ("aes256-sha256-ecp256-esn", IKE, "only valid in ESP/AH"),
        ("aes128", AH, "integrity algorithm is mandatory in AH"),
        ("aes256-sha256-ke1_nothing", IKE, "after 'ke<n>_'"),
        ("aes256-sha256-ke1_aes128", IKE, "after 'ke<n>_'"),
        ("", IKE, "empty"),
    ],
)
def test_invalid_proposals_are_refused(text: str, protocol: ProtocolId, message: str) -> None:
    with pytest.raises(ProposalSyntaxError, match=message):
        parse_proposal(text, protocol)


@pytest.mark.parametrize(
    ("text", "protocol", "transform"),
    [
        ("3des-md5-modp1024", IKE, Transform(T.ENCR, EncrId.TRIPLE_DES)),
        ("3des-md5-modp1024", IKE, Transform(T.INTEG, IntegId.HMAC_MD5_96)),
        ("3des-md5-modp1024", IKE, Transform(T.PRF, PrfId.HMAC_MD5)),
        ("3des-md5-modp1024", IKE, Transform(T.KE, KeId.MODP_1024)),
        ("des-sha1-modp768", IKE, Transform(T.ENCR, EncrId.DES)),
        ("des-sha1-modp768", IKE, Transform(T.PRF, PrfId.HMAC_SHA1)),
        ("null-sha1", ESP, Transform(T.ENCR, EncrId.NULL)),
        ("aes128-sha256_96", ESP, Transform(T.INTEG, 1026)),
        ("cast128-sha", ESP, Transform(T.ENCR, EncrId.CAST, 128)),
        ("blowfish-md5_128", ESP, Transform(T.ENCR, EncrId.BLOWFISH, 128)),
        ("camellia256ctr-sha1_160", ESP, Transform(T.INTEG, IntegId.HMAC_SHA1_160)),
        ("aes128gcm64-prfaescmac-modp1024s160", IKE, Transform(T.ENCR, EncrId.AES_GCM_8, 128)),
        ("aes192gcm96-prfaesxcbc-modp2048s224", IKE, Transform(T.ENCR, EncrId.AES_GCM_12, 192)),
        ("aes256gcm128-prfsha1-modp2048s256", IKE, Transform(T.KE, KeId.MODP_2048_256)),
        ("aes128ccm8-prfmd5-ecp192", IKE, Transform(T.ENCR, EncrId.AES_CCM_8, 128)),
        ("aes256ccm-prfsha256-ecp224bp", IKE, Transform(T.ENCR, EncrId.AES_CCM_16, 256)),
        ("aes128ctr-aescmac-ecp512bp", IKE, Transform(T.PRF, PrfId.AES128_CMAC)),
        ("chacha20poly1305-prfsha256-curve448", IKE, Transform(T.KE, KeId.CURVE448)),
        ("chacha20poly1305-prfsha256-x448", IKE, Transform(T.ENCR, EncrId.CHACHA20_POLY1305)),
        ("aes-sha2_512-mlkem1024", IKE, Transform(T.ENCR, EncrId.AES_CBC, 128)),
        ("aes-sha2_512-mlkem1024", IKE, Transform(T.INTEG, IntegId.HMAC_SHA2_512_256)),
        ("aes256-sha256-x25519-ke1_mlkem768", IKE, Transform(T.ADDKE1, KeId.ML_KEM_768)),
        ("aes256-sha256-x25519-ke3_none", IKE, Transform(T.ADDKE3, KeId.NONE)),
        ("aes128gcm16-modpnone", ESP, Transform(T.KE, KeId.NONE)),
        (" aes256 - sha256 ", ESP, Transform(T.ENCR, EncrId.AES_CBC, 256)),
        ("aes256gmac", AH, Transform(T.INTEG, IntegId.AES_256_GMAC)),
        ("aes256gmac", ESP, Transform(T.ENCR, EncrId.NULL_AUTH_AES_GMAC, 256)),
    ],
)
def test_strongswan_keywords_including_weak_ones_parse(
    text: str, protocol: ProtocolId, transform: Transform
) -> None:
    assert transform in parse_proposal(text, protocol).transforms()


def test_keywords_are_lowercase_like_strongswan() -> None:
    with pytest.raises(ProposalSyntaxError, match="lowercase") as err:
        parse_proposal("aes256gcm16-ECP384", ESP)
    assert err.value.keyword == "ECP384" and err.value.position == 12 and err.value.suggestions == ("ecp384",)


def test_esp_and_ah_drop_prf_keywords_like_strongswan() -> None:
    assert parse_proposal("aes128-sha256-prfsha256", ESP).prf == ()
    assert parse_proposal("sha256-prfsha256", AH).prf == ()


def test_transforms_are_in_wire_order() -> None:
    spec = parse_proposal("aes128-sha256-prfsha384-ecp256-ke1_mlkem768-esn", ESP)
    assert [int(t.type) for t in spec.transforms()] == sorted(int(t.type) for t in spec.transforms())
    ike = parse_proposal("aes128-sha256-prfsha384-ecp256-ke2_mlkem768-ke1_x25519", IKE)
    assert [t.type for t in ike.transforms()] == [T.ENCR, T.PRF, T.INTEG, T.KE, T.ADDKE1, T.ADDKE2]


def test_from_transforms_regroups_a_spec() -> None:
    spec = parse_proposal("aes128-aes256-sha256-sha384-ecp256-x25519-ke1_mlkem768-esn", ESP)
    assert ProposalSpec.from_transforms(ESP, spec.transforms()) == spec
    with pytest.raises(ValueError, match="unknown transform type"):
        ProposalSpec.from_transforms(ESP, [Transform(99, 1)])


def test_parse_proposals_accepts_commas_and_lists() -> None:
    a = parse_proposals("aes256gcm16-prfsha384-ecp384, aes256-sha384-ecp384", IKE)
    b = parse_proposals(["aes256gcm16-prfsha384-ecp384", "aes256-sha384-ecp384"], IKE)
    assert a == b and len(a) == 2


def test_integ_none_from_a_peer_prints_as_the_implied_default() -> None:
    spec = ProposalSpec(
        ESP,
        encr=(Transform(T.ENCR, EncrId.AES_GCM_16, 128),),
        integ=(Transform(T.INTEG, IntegId.NONE),),
        esn=(Transform(T.ESN, EsnId.NO_ESN),),
    )
    assert format_proposal(spec) == "aes128gcm16"
    assert parse_proposal(format_proposal(spec), ESP).integ == ()


def test_format_refuses_transforms_without_keyword() -> None:
    spec = ProposalSpec(IKE, encr=(Transform(T.ENCR, EncrId.AES_CBC),))  # AES-CBC without key length
    with pytest.raises(ValueError, match="no swanctl keyword"):
        format_proposal(spec)
    assert describe_proposal(spec) == "AES_CBC"


# --- Hypothesis: random keyword sequences either parse (and then round-trip) or fail with our error ---

_WORDS = sorted(KEYWORDS)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    words=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=7),
    addke=st.lists(st.tuples(st.integers(1, 7), st.sampled_from(["mlkem768", "x25519", "none"])), max_size=2),
    protocol=st.sampled_from([IKE, ESP, AH]),
)
def test_any_keyword_sequence_parses_or_raises_proposal_syntax_error(
    words: list[str], addke: list[tuple[int, str]], protocol: ProtocolId
) -> None:
    text = "-".join(words + [f"ke{n}_{w}" for n, w in addke])
    try:
        spec = parse_proposal(text, protocol)
    except ProposalSyntaxError as e:
        assert e.text == text
        return
    canonical = format_proposal(spec)
    again = parse_proposal(canonical, protocol)
    assert again == spec
    assert format_proposal(again) == canonical
    assert describe_proposal(again) == describe_proposal(spec)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    text=st.text(alphabet="abcdehlmnoprsx0123456789_- ", max_size=40), protocol=st.sampled_from([IKE, ESP])
)
def test_random_text_never_raises_anything_but_proposal_syntax_error(text: str, protocol: ProtocolId) -> None:
    try:
        spec = parse_proposal(text, protocol)
    except ProposalSyntaxError:
        return
    assert parse_proposal(format_proposal(spec), protocol) == spec


_SPEC_ENCR = st.sampled_from(
    [
        Transform(T.ENCR, EncrId.AES_CBC, 128),
        Transform(T.ENCR, EncrId.AES_CBC, 256),
        Transform(T.ENCR, EncrId.AES_CTR, 192),
        Transform(T.ENCR, EncrId.TRIPLE_DES),
        Transform(T.ENCR, EncrId.CAMELLIA_CBC, 256),
    ]
)
_SPEC_AEAD = st.sampled_from(
    [
        Transform(T.ENCR, EncrId.AES_GCM_16, 256),
        Transform(T.ENCR, EncrId.AES_GCM_8, 128),
        Transform(T.ENCR, EncrId.AES_CCM_12, 192),
        Transform(T.ENCR, EncrId.CHACHA20_POLY1305),
    ]
)
_SPEC_INTEG = st.sampled_from([Transform(T.INTEG, i) for i in (2, 5, 8, 12, 13, 14, 1026)])
_SPEC_PRF = st.sampled_from([Transform(T.PRF, p) for p in PrfId if p != PrfId.HMAC_TIGER])
_SPEC_KE = st.sampled_from([Transform(T.KE, k) for k in KeId if k != KeId.NONE])


@st.composite
def ike_specs(draw: st.DrawFn) -> ProposalSpec:
    aead = draw(st.booleans())
    encr = draw(st.lists(_SPEC_AEAD if aead else _SPEC_ENCR, min_size=1, max_size=3, unique=True))
    integ = () if aead else tuple(draw(st.lists(_SPEC_INTEG, min_size=1, max_size=3, unique=True)))
    prf = draw(st.lists(_SPEC_PRF, min_size=1, max_size=2, unique=True))
    ke = draw(st.lists(_SPEC_KE, min_size=1, max_size=3, unique=True))
    return ProposalSpec(IKE, encr=tuple(encr), integ=integ, prf=tuple(prf), ke=tuple(ke))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(spec=ike_specs())
def test_valid_ike_specs_print_and_parse_back_identically(spec: ProposalSpec) -> None:
    assert parse_proposal(format_proposal(spec), IKE) == spec
