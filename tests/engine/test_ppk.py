"""RFC 8784 post-quantum preshared keys between two in-memory engines: mandatory and optional modes, the
NO_PPK_AUTH fallback, a wrong PPK refused, and the PPK on top of ML-KEM (RFC 9370)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ikeguard.engine.ppk import PpkSettings
from ikeguard.engine.states import IkeState
from tests.engine.harness import Network, child, mirror, pair, psk_conn

PPK = PpkSettings(b"ppk-east-west", b"\x5a" * 32)


def _pair(a_ppk: PpkSettings | None, b_ppk: PpkSettings | None,
          ike: tuple[str, ...] = ("aes256gcm16-prfsha384-ecp384",)) -> Network:
    c = child()
    a = replace(psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=ike), ppk=a_ppk)
    b = replace(psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), ike_proposals=ike),
                ppk=b_ppk)
    net = pair([a], [b])
    net.initiate()
    net.run()
    return net


def _states(net: Network) -> tuple[IkeState | None, IkeState | None]:
    a, b = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    return (a[0].state if a else None, b[0].state if b else None)


@pytest.mark.parametrize("ike", [("aes256gcm16-prfsha384-ecp384",),
                                 ("aes256gcm16-prfsha384-ecp384-ke1_mlkem768",)])
def test_mandatory_ppk_on_both_sides_is_used(ike: tuple[str, ...]) -> None:
    required = replace(PPK, required=True)
    net = _pair(required, required, ike)
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert a_sa.ppk_used and b_sa.ppk_used
    assert [e.details.get("ppk") for e in net.b.audits("auth.success")] == ["used"]
    plain = _pair(None, None, ike)
    assert a_sa.crypto is not None and plain.a.manager.ike_sas()[0].crypto is not None
    assert bytes(a_sa.crypto.keys.sk_d) == bytes(b_sa.crypto.keys.sk_d)
    # same seeds and proposals without the PPK: another SK_d (the PPK went into it)
    assert bytes(a_sa.crypto.keys.sk_d) != bytes(plain.a.manager.ike_sas()[0].crypto.keys.sk_d)
    assert net.a.installs() and net.b.installs()


def test_optional_ppk_falls_back_to_no_ppk_auth_when_the_responder_has_another() -> None:
    other = PpkSettings(b"another-ppk", b"\x33" * 32)
    net = _pair(PPK, other)
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert not a_sa.ppk_used and not b_sa.ppk_used
    assert [e.details.get("ppk") for e in net.a.audits("auth.success")] == ["not used"]


def test_optional_ppk_with_a_responder_without_ppk_support() -> None:
    net = _pair(PPK, None)
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED and not a_sa.use_ppk and not a_sa.ppk_used


def test_wrong_mandatory_ppk_is_an_authentication_failure() -> None:
    net = _pair(replace(PPK, required=True), replace(PPK, key=b"\x66" * 32, required=True))
    assert IkeState.ESTABLISHED not in _states(net)
    assert net.b.audits("auth.failure") or net.a.audits("auth.failure")


def test_responder_requiring_a_ppk_refuses_an_initiator_without_one() -> None:
    net = _pair(None, replace(PPK, required=True))
    assert IkeState.ESTABLISHED not in _states(net)
    assert net.b.audits("auth.failure")


def test_initiator_requiring_a_ppk_refuses_a_responder_without_support() -> None:
    net = _pair(replace(PPK, required=True), None)
    assert IkeState.ESTABLISHED not in _states(net)
