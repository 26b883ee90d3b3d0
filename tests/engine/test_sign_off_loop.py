"""Our AUTH signature made off the event loop for keys that may block (PKCS#11 tokens, issue 18).

A key with ``off_loop`` (``crypto.pkcs11_key`` token keys) makes the responder park the IKE_AUTH request
(``engine.pending``) and emit ``SignatureJob``; nothing is signed on the engine's thread. The service signs
in a worker and hands the answer back (``IkeManager.signature_made``); the request runs again and the
response carries that signature. A failed signature refuses the IKE SA with AUTHENTICATION_FAILED."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.engine.events import SignAnswer, SignatureJob
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.service.gateway import _make_signature
from tests.engine.harness import FAST, DeterministicRandom, Network, child, mirror
from tests.engine.pki import T0, TrustAnchorValidator, ca
from tests.engine.test_setup_certs import cert_conn


class SlowKey(ec.EllipticCurvePrivateKey):
    """A file key that says it may block, counting its signatures."""

    off_loop = True

    def __init__(self, inner: ec.EllipticCurvePrivateKey) -> None:
        self.inner, self.calls = inner, 0

    def sign(self, data: Any, signature_algorithm: Any) -> bytes:
        self.calls += 1
        return self.inner.sign(data, signature_algorithm)

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.inner.curve

    @property
    def key_size(self) -> int:
        return self.inner.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.inner.public_key()

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> SlowKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SlowKey:
        return self


def waiting() -> tuple[Network, SignatureJob, SlowKey]:
    c = child(proposals=("aes256gcm16-ecp384",))
    a = cert_conn("tunnel", "a.example.net", "b.example.net", "ecdsa-p256", children=(c,))
    b = cert_conn("tunnel", "b.example.net", "a.example.net", "ecdsa-p384", children=(mirror(c),))
    assert isinstance(b.local.private_key, ec.EllipticCurvePrivateKey)
    key = SlowKey(b.local.private_key)
    b = replace(b, local=replace(b.local, private_key=key))
    anchors = [ca("Test CA")[1]]
    net = Network(IkeManager([a], FAST, random=DeterministicRandom(1),
                             validator=TrustAnchorValidator(anchors)),
                  IkeManager([b], FAST, random=DeterministicRandom(1001),
                             validator=TrustAnchorValidator(anchors)))
    net.now = T0
    net.initiate()
    net.run()
    jobs = [e for e in net.b.events if isinstance(e, SignatureJob)]
    assert len(jobs) == 1 and key.calls == 0  # nothing signed on the engine's thread
    assert net.b.manager.ike_sas()[0].pending is not None
    assert net.a.manager.ike_sas()[0].state is IkeState.AUTH_SENT
    return net, jobs[0], key


def test_responder_waits_for_the_worker_signature_and_completes() -> None:
    net, job, key = waiting()
    answer = _make_signature(job.request)  # what the gateway runs in its executor
    assert key.calls == 1 and not answer.error
    net.b.manager.signature_made(job.ike_uniqueid, job.token, answer, net.now)
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert key.calls == 1 and b_sa.sign_answer is None
    assert len(net.a.installs()) == len(net.b.installs()) == 2


def test_failed_worker_signature_refuses_the_ike_sa() -> None:
    net, job, _ = waiting()
    failed = SignAnswer(job.request.octets, error="PKCS#11 signature failed on pkcs11:token=t;object=k: X")
    net.b.manager.signature_made(job.ike_uniqueid, job.token, failed, net.now)
    net.run()
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    reasons = [e.reason for e in net.b.audits("auth.failure")]
    assert reasons and "cannot sign AUTH: PKCS#11 signature failed" in reasons[0]


def initiator_waiting() -> tuple[Network, SignatureJob, SlowKey]:
    """The initiator (a) holds the token key: after IKE_SA_INIT it asks for its signature, sends nothing."""
    c = child(proposals=("aes256gcm16-ecp384",))
    a = cert_conn("tunnel", "a.example.net", "b.example.net", "ecdsa-p384", children=(c,))
    b = cert_conn("tunnel", "b.example.net", "a.example.net", "ecdsa-p256", children=(mirror(c),))
    assert isinstance(a.local.private_key, ec.EllipticCurvePrivateKey)
    key = SlowKey(a.local.private_key)
    a = replace(a, local=replace(a.local, private_key=key))
    anchors = [ca("Test CA")[1]]
    net = Network(IkeManager([a], FAST, random=DeterministicRandom(1),
                             validator=TrustAnchorValidator(anchors)),
                  IkeManager([b], FAST, random=DeterministicRandom(1001),
                             validator=TrustAnchorValidator(anchors)))
    net.now = T0
    net.initiate()
    net.run()
    jobs = [e for e in net.a.events if isinstance(e, SignatureJob)]
    assert len(jobs) == 1 and key.calls == 0  # nothing signed on the engine's thread
    a_sa = net.a.manager.ike_sas()[0]
    assert a_sa.pending is not None and a_sa.window.in_flight is None  # IKE_AUTH not sent yet
    return net, jobs[0], key


def test_initiator_signs_off_the_loop_then_sends_ike_auth() -> None:
    net, job, key = initiator_waiting()
    answer = _make_signature(job.request)
    assert key.calls == 1 and not answer.error
    net.a.manager.signature_made(job.ike_uniqueid, job.token, answer, net.now)
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert key.calls == 1 and a_sa.sign_answer is None and a_sa.pending is None
    assert len(net.a.installs()) == len(net.b.installs()) == 2


def test_initiator_failed_worker_signature_closes_the_ike_sa() -> None:
    net, job, _ = initiator_waiting()
    failed = SignAnswer(job.request.octets, error="PKCS#11 signature failed on pkcs11:token=t;object=k: X")
    net.a.manager.signature_made(job.ike_uniqueid, job.token, failed, net.now)
    net.run()
    assert net.a.manager.ike_sas() == []
    reasons = [e.reason for e in net.a.audits() if e.outcome.value == "failure"]
    assert any("cannot sign AUTH: PKCS#11 signature failed" in r for r in reasons), reasons
