"""Issue 13 S4 and S5 in memory (two IkeManagers, injected clock): a peer's identity is literal, never a
pattern (RFC 7296 §3.5; strongSwan matches wildcards on the configured side only), and a peer's AUTH must use
a signature scheme the profile allows with a hash we announced (RFC 7427 §4). The same cases run through the
real gateway with strongSwan in tests/interop/test_literal_identity_and_auth_schemes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from ikeguard.engine.events import SendDatagram
from ikeguard.engine.settings import AuthKind, ConnectionSettings, EngineSettings, LocalAuth, RemoteAuth
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks import ike_auth
from ikeguard.pki.engine_validator import ConnectionTrust, PkiValidator
from ikeguard.pki.revocation import NoRevocation
from ikeguard.pki.validation_policy import ValidationPolicy
from ikeguard.policy.profile import load_profile
from ikeguard.wire.iana import IdType
from tests.engine.harness import FAST, child, mirror, pair, psk_conn
from tests.engine.pki import T0, TrustAnchorValidator, ca, leaf

PATTERN = "*.example.net"
CNSA = replace(FAST, profile=load_profile("cnsa-1"))


@pytest.fixture
def raw_fqdn_ids() -> Iterator[Callable[[str, bytes], None]]:
    """Let an initiator's configured id go out as arbitrary ID_FQDN octets (what a hostile peer can send;
    our own parser refuses to send ``%any``), by wrapping the engine's ID builder for that one id."""
    original = ike_auth.identity_payload
    table: dict[str, bytes] = {}

    def wrapped(text: str, cert=None):  # type: ignore[no-untyped-def]
        if text in table:
            return IdType.FQDN, table[text]
        return original(text, cert)

    ike_auth.identity_payload = wrapped  # type: ignore[assignment]
    try:
        yield lambda configured, sent: table.__setitem__(configured, sent)
    finally:
        ike_auth.identity_payload = original  # type: ignore[assignment]


def _psk_net(initiator_id: str, responder_remote: str | None):  # type: ignore[no-untyped-def]
    c = child()
    a = psk_conn("tunnel", initiator_id, "gw.example.net", (c,))
    b = psk_conn("tunnel", "gw.example.net", responder_remote, (mirror(c),))
    return pair([a], [b])


# -- S4: identities --------------------------------------------------------------------------------
def test_a_peer_sending_the_pattern_itself_is_not_matched_by_it() -> None:
    net = _psk_net(PATTERN, PATTERN)  # the initiator's id *is* the responder's pattern, sent as ID_FQDN
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas() == [] and net.a.manager.ike_sas() == []
    failure = net.b.audits("auth.failure")
    assert failure and f"no connection accepts identity {PATTERN}" in failure[0].reason, failure
    assert "AUTHENTICATION_FAILED" in net.a.audits("auth.failure")[0].reason


def test_a_concrete_identity_is_matched_by_the_pattern_and_recorded_as_itself() -> None:
    net = _psk_net("m1.example.net", PATTERN)
    net.initiate()
    net.run()
    sa = net.b.manager.ike_sas()[0]
    assert sa.state is IkeState.ESTABLISHED and sa.remote_id == "m1.example.net"
    assert [e.remote_id for e in net.b.audits("auth.success")] == ["m1.example.net"]


@pytest.mark.parametrize("sent", [b"%any", b"*", b"*.example.net", b"m1.*.net"])
def test_wildcard_text_from_a_peer_never_satisfies_a_pattern(
    sent: bytes, raw_fqdn_ids: Callable[[str, bytes], None]
) -> None:
    raw_fqdn_ids("attacker.example.org", sent)
    for pattern in (PATTERN, "*", "m1.*.net"):
        net = _psk_net("attacker.example.org", pattern)
        net.initiate()
        net.run()
        assert net.b.manager.ike_sas() == [], (sent, pattern)
        assert f"no connection accepts identity {sent.decode()}" in net.b.audits("auth.failure")[0].reason


def test_percent_any_from_a_peer_is_text_keyed_as_itself(raw_fqdn_ids: Callable[[str, bytes], None]) -> None:
    """Under remote id %any the literal FQDN "%any" authenticates (it is just a name); its SA, its audit
    records and its INITIAL_CONTACT are keyed on that name, so the real peer's SA is not touched."""
    raw_fqdn_ids("attacker.example.org", b"%any")
    c = child()
    honest = psk_conn("tunnel", "m1.example.net", "gw.example.net", (c,))
    attacker = psk_conn("evil", "attacker.example.org", "gw.example.net", (c,), unique="replace")
    b = psk_conn("tunnel", "gw.example.net", None, (mirror(c),), unique="replace")
    net = pair([honest, attacker], [b])
    net.initiate("tunnel")
    net.run()
    net.initiate("evil")  # carries INITIAL_CONTACT (first contact of that connection)
    net.run()
    ids = sorted(sa.remote_id for sa in net.b.manager.ike_sas() if sa.state is IkeState.ESTABLISHED)
    assert ids == ["%any", "m1.example.net"]
    assert sorted(e.remote_id for e in net.b.audits("auth.success")) == ["%any", "m1.example.net"]


def _cert_conn(name: str, me: str, peer: str | None, dns: str,
               kind: str = "ecdsa-p384") -> ConnectionSettings:
    key, cert = leaf(dns, kind)
    c = child(proposals=("aes256gcm16-ecp384",))
    return ConnectionSettings(name, ike_auth_proposals(), LocalAuth(AuthKind.PUBKEY, me, private_key=key,
                                                                   certs=(cert,)),
                              RemoteAuth(AuthKind.PUBKEY, peer), (c,))


def ike_auth_proposals():  # type: ignore[no-untyped-def]
    from tests.engine.harness import ike

    return ike("aes256gcm16-prfsha384-ecp384")


def _pki_validator(*names: str) -> PkiValidator:
    trust = ConnectionTrust((ca()[1],), NoRevocation(), ValidationPolicy())
    return PkiValidator(dict.fromkeys(names, trust))


def test_certificate_does_not_prove_a_claimed_percent_any(raw_fqdn_ids: Callable[[str, bytes], None]) -> None:
    """pki/identity used to treat a peer's "%any" as matching any certificate: any holder of a certificate
    from the CA authenticated without its identity being in it."""
    raw_fqdn_ids("m1.example.net", b"%any")
    a = _cert_conn("tunnel", "m1.example.net", "gw.example.net", "m1.example.net")
    gw = _cert_conn("tunnel", "gw.example.net", None, "gw.example.net")
    b = replace(gw, children=(mirror(gw.children[0]),))
    net = pair([a], [b], validator=_pki_validator("tunnel"))
    net.now = T0
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas() == []
    rejected = net.b.audits("cert.rejected")
    assert rejected and rejected[0].reason.startswith("name_mismatch"), rejected


def test_certificate_with_a_pattern_id_is_refused_and_the_concrete_id_accepted(
    raw_fqdn_ids: Callable[[str, bytes], None],
) -> None:
    gw = _cert_conn("tunnel", "gw.example.net", PATTERN, "gw.example.net")
    b = replace(gw, children=(mirror(gw.children[0]),))
    for claimed, accepted in ((PATTERN, False), ("m1.example.net", True)):
        a = _cert_conn("tunnel", claimed, "gw.example.net", "m1.example.net")
        net = pair([a], [b], validator=_pki_validator("tunnel"))
        net.now = T0
        net.initiate()
        net.run()
        sas = net.b.manager.ike_sas()
        assert bool(sas) is accepted, claimed
        if accepted:
            assert sas[0].remote_id == "m1.example.net"


# -- S5: signature schemes -------------------------------------------------------------------------
def _cnsa_pair(a_kind: str, *, rsa_pss: bool = True, filt=None):  # type: ignore[no-untyped-def]
    c = child(proposals=("aes256gcm16-ecp384",))
    key_a, cert_a = leaf("a.example.net", a_kind)
    key_b, cert_b = leaf("b.example.net", "ecdsa-p384")
    ikep = ike_auth_proposals()
    a = ConnectionSettings("tunnel", ikep, LocalAuth(AuthKind.PUBKEY, "a.example.net", private_key=key_a,
                                                     certs=(cert_a,), rsa_pss=rsa_pss),
                           RemoteAuth(AuthKind.PUBKEY, "b.example.net"), (c,))
    b = ConnectionSettings("tunnel", ikep, LocalAuth(AuthKind.PUBKEY, "b.example.net", private_key=key_b,
                                                     certs=(cert_b,)),
                           RemoteAuth(AuthKind.PUBKEY, "a.example.net"), (mirror(c),))
    net = pair([a], [b], b_settings=CNSA, validator=TrustAnchorValidator([ca()[1]]))
    net.filter = filt
    net.now = T0
    return net


@pytest.mark.parametrize(("kind", "rsa_pss", "scheme"), [("ecdsa-p384", True, "ecdsa-sha384"),
                                                         ("rsa", True, "rsa/pss-sha384")])
def test_cnsa_responder_accepts_the_allowed_schemes(kind: str, rsa_pss: bool, scheme: str) -> None:
    net = _cnsa_pair(kind, rsa_pss=rsa_pss)
    net.initiate()
    net.run()
    assert [sa.state for sa in net.b.manager.ike_sas()] == [IkeState.ESTABLISHED]


def test_cnsa_responder_refuses_rsa_pkcs1v15() -> None:
    net = _cnsa_pair("rsa", rsa_pss=False)  # signs sha384WithRSAEncryption (PKCS#1 v1.5)
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas() == [] and net.a.manager.ike_sas() == []
    reason = net.b.audits("auth.failure")[0].reason
    assert "rsa-sha384" in reason and "not allowed by policy" in reason, reason
    assert "AUTHENTICATION_FAILED" in net.a.audits("auth.failure")[0].reason


def _claim_sha256(dgram: SendDatagram, side: str) -> list[SendDatagram]:
    """On the wire from b: SIGNATURE_HASH_ALGORITHMS (16431) = SHA2_384 only becomes SHA2_256 (the peer
    believes SHA-256 was announced, as a man in the middle or a buggy peer would make it)."""
    marker = b"\x00\x00\x40\x2f\x00\x03"
    if side == "b" and marker in dgram.data:
        return [replace(dgram, data=dgram.data.replace(marker, b"\x00\x00\x40\x2f\x00\x02"))]
    return [dgram]


def test_cnsa_responder_announces_only_sha384_and_refuses_an_ecdsa_sha256_signature() -> None:
    announced: list[bytes] = []

    def watch(dgram: SendDatagram, side: str) -> list[SendDatagram]:
        announced.append(dgram.data)
        return _claim_sha256(dgram, side)

    net = _cnsa_pair("ecdsa-p384", filt=watch)
    net.initiate()
    net.run()
    assert any(b"\x00\x00\x40\x2f\x00\x03" in d for d in announced[1:2])  # b's IKE_SA_INIT response
    assert net.b.manager.ike_sas() == []
    reason = net.b.audits("auth.failure")[0].reason
    assert "ecdsa-sha256" in reason and "not allowed by policy" in reason, reason


def test_baseline_responder_still_accepts_ecdsa_sha256_and_pkcs1v15() -> None:
    for kind, pss in (("ecdsa-p256", True), ("rsa", False)):
        c = child()
        key_a, cert_a = leaf("a.example.net", kind)
        key_b, cert_b = leaf("b.example.net", "ecdsa-p384")
        ikep = ike_auth_proposals()
        a = ConnectionSettings("tunnel", ikep, LocalAuth(AuthKind.PUBKEY, "a.example.net", private_key=key_a,
                                                         certs=(cert_a,), rsa_pss=pss),
                               RemoteAuth(AuthKind.PUBKEY, "b.example.net"), (c,))
        b = ConnectionSettings("tunnel", ikep, LocalAuth(AuthKind.PUBKEY, "b.example.net", private_key=key_b,
                                                         certs=(cert_b,)),
                               RemoteAuth(AuthKind.PUBKEY, "a.example.net"), (mirror(c),))
        net = pair([a], [b], settings=replace(FAST), validator=TrustAnchorValidator([ca()[1]]))
        net.now = T0
        net.initiate()
        net.run()
        assert [sa.state for sa in net.b.manager.ike_sas()] == [IkeState.ESTABLISHED], kind


def test_profile_settings_object_is_unchanged_by_the_memo() -> None:
    from ikeguard.engine.auth_policy import allowed_signature_schemes, announced_hashes
    from ikeguard.wire.iana import HashAlgorithm

    assert announced_hashes(CNSA.profile) == (HashAlgorithm.SHA2_384,)
    assert {s.token for s in allowed_signature_schemes(CNSA.profile)} == {"ecdsa-sha384", "rsa/pss-sha384"}
    baseline = EngineSettings().profile
    assert announced_hashes(baseline) == (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384,
                                          HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY)
