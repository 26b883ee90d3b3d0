"""The gateway's own certificate from an ACME CA (RFC 8555), with the ``acme`` library (certbot's client).

``obtain_certificate`` registers (or finds) the account of ``account_key``, orders a certificate for DNS
names and IP addresses (RFC 8738 IP identifiers), answers each ``http-01`` challenge (RFC 8555 §8.3) from a
small HTTP responder of its own for the time of the order, finalises with a CSR and returns the chain.

The CSR (RFC 2986) is built by ``pki/cert_requests.py`` and signed through the private key's ``sign``
method (the gateway's key may be a PKCS#11 token key that never leaves the token). Blocking network I/O:
call it from a worker thread or before the event loop runs, never on it.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import jwa, jwk

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki import cert_requests

__all__ = ["AcmeError", "AcmeOrder", "build_csr", "load_account_key", "obtain_certificate"]

USER_AGENT = "ikeguard"


class AcmeError(Exception):
    """An ACME order that could not complete; the message is one line naming what failed (never a key)."""


@dataclass(frozen=True)
class AcmeOrder:
    """What to order and from where."""

    directory: str  # the ACME directory URL (https)
    account_key: Path  # PEM EC P-256 or RSA key of the ACME account (RFC 8555 §7.3)
    identifiers: tuple[str, ...]  # DNS names and IP addresses
    http01_listen: tuple[str, int] = ("0.0.0.0", 80)  # noqa: S104 - the http-01 responder (RFC 8555 §8.3)
    ca_bundle: Path | None = None  # CA certificates for the ACME server's HTTPS (None: the system's)
    contact: tuple[str, ...] = ()  # e.g. mailto:pki@example.net
    timeout: float = 90.0  # for the whole order (challenges and finalisation)


def load_account_key(path: Path) -> tuple[jwk.JWK, jwa.JWASignature]:
    """The ACME account key and its JWS algorithm; AcmeError (one line) when missing or unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AcmeError(f"ACME account key missing: {path} (make one, e.g. `pki --gen --type ecdsa "
                        f"--size 256 --outform pem > {path.name}`, mode 0600)") from None
    except OSError as exc:
        raise AcmeError(f"ACME account key unreadable: {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise AcmeError(f"ACME account key {path} is not an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return jwk.JWKEC(key=key), jwa.ES256
    if isinstance(key, rsa.RSAPrivateKey):
        return jwk.JWKRSA(key=key), jwa.RS256
    raise AcmeError(f"ACME account key {path} must be EC P-256 or RSA")


def build_csr(key: PrivateKey, identifiers: Sequence[str]) -> bytes:
    """A PEM PKCS#10 request for ``identifiers`` signed by ``key`` (``pki/cert_requests.py``); AcmeError
    when it cannot be built."""
    try:
        return cert_requests.build_csr(key, identifiers)
    except cert_requests.RequestError as exc:
        raise AcmeError(str(exc)) from None


class _Http01Handler(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /.well-known/acme-challenge/<token>`` with the key authorisation, nothing else."""

    server: _Http01Server

    def do_GET(self) -> None:
        prefix = "/.well-known/acme-challenge/"
        body = self.server.answers.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Http01Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen: tuple[str, int]) -> None:
        family_v6 = ":" in listen[0]
        if family_v6:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(listen, _Http01Handler)
        self.answers: dict[str, str] = {}


@contextmanager
def _http01(listen: tuple[str, int]) -> Iterator[_Http01Server]:
    try:
        server = _Http01Server(listen)
    except OSError as exc:
        raise AcmeError(f"cannot listen for http-01 on {listen[0]}:{listen[1]}: "
                        f"{exc.strerror or exc}") from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="acme-http01", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _client(order: AcmeOrder) -> client.ClientV2:
    jwk, alg = load_account_key(order.account_key)
    verify: Any = str(order.ca_bundle) if order.ca_bundle is not None else True  # requests' `verify`
    net = client.ClientNetwork(jwk, alg=alg, verify_ssl=verify, user_agent=USER_AGENT, timeout=15)
    directory = client.ClientV2.get_directory(order.directory, net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(terms_of_service_agreed=True)
    if order.contact:
        registration = registration.update(contact=tuple(order.contact))
    try:
        net.account = acme.new_account(registration)
    except errors.ConflictError as exc:  # RFC 8555 §7.3.1: the account exists, its URL in Location
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    return acme


def _answer(acme: client.ClientV2, orderr: messages.OrderResource, server: _Http01Server) -> None:
    jwk = acme.net.key
    for authz in orderr.authorizations:
        if authz.body.status == messages.STATUS_VALID:
            continue
        found = [c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)]
        if not found:
            raise AcmeError(f"the CA offers no http-01 challenge for {authz.body.identifier.value}")
        chall = found[0]
        response, validation = chall.response_and_validation(jwk)
        server.answers[chall.chall.encode("token")] = validation
        acme.answer_challenge(chall, response)


def obtain_certificate(order: AcmeOrder, key: PrivateKey) -> list[x509.Certificate]:
    """Run one order to the end (RFC 8555 §7.4); the issued chain, leaf first. AcmeError on any failure,
    with a one-line reason (account key, CA unreachable, challenge refused, timeout...)."""
    csr_pem = build_csr(key, order.identifiers)
    try:
        acme = _client(order)
        with _http01(order.http01_listen) as server:
            orderr = acme.new_order(csr_pem)
            _answer(acme, orderr, server)
            deadline = dt.datetime.now() + dt.timedelta(seconds=order.timeout)
            orderr = acme.poll_and_finalize(orderr, deadline=deadline)
    except AcmeError:
        raise
    except errors.ValidationError as exc:
        problems = "; ".join(str(getattr(c.error, "detail", c.error)) for a in exc.failed_authzrs
                             for c in a.body.challenges if c.error is not None)
        raise AcmeError(f"ACME challenge failed: {problems or exc}") from None
    except errors.TimeoutError:
        raise AcmeError(f"ACME order not finished within {order.timeout:.0f} s") from None
    except messages.Error as exc:
        raise AcmeError(f"ACME server refused: {exc.typ}: {exc.detail}") from None
    except (errors.Error, OSError, ValueError) as exc:  # requests' errors are OSErrors (unreachable, TLS)
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AcmeError(f"ACME request to {order.directory} failed: {type(exc).__name__}: {text[:300]}") \
            from None
    try:
        chain = x509.load_pem_x509_certificates(orderr.fullchain_pem.encode())
    except ValueError as exc:
        raise AcmeError(f"the CA returned no usable certificate chain: {exc}") from None
    ours = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != ours:
        raise AcmeError("the CA returned a certificate for another key")
    return chain
