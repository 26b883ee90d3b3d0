"""Engine-only IKE_SA setup rate: two in-memory IkeManagers (no sockets), PSK + ECP-256 and ECDSA P-384
certificates + ECP-384, each setup = IKE_SA_INIT + IKE_AUTH with one Child SA, both sides' CPU counted."""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import time
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ikeguard.crypto.random import SystemRandom
from ikeguard.engine.events import Endpoint, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import (
    AuthKind,
    ChildSettings,
    ConnectionSettings,
    LocalAuth,
    RemoteAuth,
)
from ikeguard.engine.validator import CertVerdict
from ikeguard.wire.iana import ProtocolId
from ikeguard.wire.proposal_string import parse_proposals

A = Endpoint(ipaddress.ip_address("192.0.2.1"), 500)
B = Endpoint(ipaddress.ip_address("198.51.100.1"), 500)


class AnchorValidator:
    """Issuer-signature check against one anchor (what the engine asks of a validator)."""

    def __init__(self, anchor: x509.Certificate) -> None:
        self.anchor = anchor

    def validate(
        self, chain: Sequence[x509.Certificate], identity: str, connection: str, now: float
    ) -> CertVerdict:
        chain[0].verify_directly_issued_by(self.anchor)
        return CertVerdict(True, "", chain[0].not_valid_after_utc)


def _pki(
    b_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]]]:
    """A CA and a leaf for each side; ``b_key``: the responder's key (a token key in bench_token_keys)."""
    ca_key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    start, end = dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    leaves = {}
    for dns in ("a.example.net", "b.example.net"):
        key = ec.generate_private_key(ec.SECP384R1())
        if b_key is not None and dns == "b.example.net":
            key = b_key
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(ca_key, hashes.SHA384())
        )
        leaves[dns] = (key, cert)
    return ca, leaves


def _conns(
    kind: str, b_key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[ConnectionSettings, ConnectionSettings, AnchorValidator | None]:
    group = {"psk": "ecp256", "psk-pq": "ecp384-ke1_mlkem768", "psk-384": "ecp384"}.get(kind, "ecp384")
    ike = parse_proposals([f"aes256gcm16-prfsha384-{group}"], ProtocolId.IKE)
    kind = "psk" if kind.startswith("psk") else kind
    esp = parse_proposals(["aes256gcm16"], ProtocolId.ESP)
    ca, leaves = _pki(b_key) if kind == "cert" else (None, {})
    conns = []
    for me, peer, lts, rts in (
        ("a.example.net", "b.example.net", "10.1.0.0/24", "10.2.0.0/24"),
        ("b.example.net", "a.example.net", "10.2.0.0/24", "10.1.0.0/24"),
    ):
        child = ChildSettings("net", (lts,), (rts,), esp)
        if kind == "psk":
            local = LocalAuth(AuthKind.PSK, me, psk=b"benchmark secret, long enough to pass")
            remote = RemoteAuth(AuthKind.PSK, peer, psk=b"benchmark secret, long enough to pass")
        else:
            key, cert = leaves[me]
            local = LocalAuth(AuthKind.PUBKEY, me, private_key=key, certs=(cert,))
            remote = RemoteAuth(AuthKind.PUBKEY, peer)
        conns.append(ConnectionSettings("bench", ike, local, remote, (child,), dpd_delay=0))
    return conns[0], conns[1], AnchorValidator(ca) if ca is not None else None


class _Peer(Protocol):
    def next_event(self) -> object: ...

    def receive_datagram(self, data: bytes, local: Endpoint, remote: Endpoint, now: float) -> None: ...


def _setup_once(a: IkeManager, b: _Peer, now: float) -> None:
    """One IKE_SA_INIT + IKE_AUTH from ``a`` to ``b``."""
    a.initiate("bench", local=A, remote=B, now=now)
    pump(a, b, now)


def pump(a: _Peer, b: _Peer, now: float) -> None:
    """Hand the datagrams each engine sends to the other until both rest."""
    pending = True
    while pending:
        pending = False
        for src, dst in ((a, b), (b, a)):
            while (event := src.next_event()) is not None:
                if isinstance(event, SendDatagram):
                    pending = True
                    dst.receive_datagram(event.data, event.remote, event.local, now)


class _Timed:
    """The responder's engine with the process time of its own calls added up (the initiator's excluded)."""

    def __init__(self, engine: IkeManager) -> None:
        self.engine, self.spent = engine, 0.0

    def next_event(self) -> object:
        began = time.process_time()
        event = self.engine.next_event()
        self.spent += time.process_time() - began
        return event

    def receive_datagram(self, data: bytes, local: Endpoint, remote: Endpoint, now: float) -> None:
        began = time.process_time()
        self.engine.receive_datagram(data, local, remote, now)
        self.spent += time.process_time() - began


def _setups(kind: str, count: int, b_key: ec.EllipticCurvePrivateKey | None = None) -> float:
    a_conn, b_conn, validator = _conns(kind, b_key)
    a = IkeManager([a_conn], random=SystemRandom(), validator=validator)
    b = IkeManager([b_conn], random=SystemRandom(), validator=validator)
    now = 1_800_000_000.0
    start = time.perf_counter()
    for _ in range(count):
        _setup_once(a, b, now)
    elapsed = time.perf_counter() - start
    up = sum(1 for sa in b.ike_sas() if sa.state.value == "established")
    if up != count:
        raise RuntimeError(f"only {up} of {count} IKE SAs established")
    return count / elapsed


def responder_cpu_per_setup(kind: str, count: int) -> float:
    """CPU seconds the responder's engine spends per IKE_SA setup (IKE_SA_INIT + IKE_AUTH + one Child SA):
    process time around its ``receive_datagram`` and ``next_event`` calls only, the initiator's excluded. All
    SAs come from one identity under ``unique = no``, so the responder holds ``count`` SAs of one peer."""
    gc.collect()  # the previous cases' engines are garbage: not this case's collections to pay
    a_conn, b_conn, validator = _conns(kind)
    a = IkeManager([a_conn], random=SystemRandom(), validator=validator)
    b = _Timed(IkeManager([b_conn], random=SystemRandom(), validator=validator))
    for _ in range(count):
        _setup_once(a, b, 1_800_000_000.0)
    return b.spent / count


def main() -> None:
    """Print IKE_SA setups per second for both suites (one process, both peers on one core), and the
    responder's share of the CPU per setup."""
    for kind, label, count in (
        ("psk", "PSK, aes256gcm16-prfsha384-ecp256", 300),
        ("psk-384", "PSK, aes256gcm16-prfsha384-ecp384", 200),
        ("psk-pq", "PSK, aes256gcm16-prfsha384-ecp384-ke1_mlkem768 (IKE_INTERMEDIATE)", 200),
        ("cert", "ECDSA P-384 certificates, aes256gcm16-prfsha384-ecp384", 100),
    ):
        rate = _setups(kind, count)
        print(f"engine IKE_SA setups/s ({label}; initiator+responder in one process): {rate:,.0f}")
    for kind, label, count in (("psk", "PSK ECP-256", 1000), ("cert", "ECDSA P-384 certificates", 300)):
        cpu = responder_cpu_per_setup(kind, count)
        print(f"responder engine CPU per IKE_SA setup ({label}, {count} SAs held): {cpu * 1000:.3f} ms")


if __name__ == "__main__":
    main()
