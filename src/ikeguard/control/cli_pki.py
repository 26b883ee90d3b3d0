"""``ikeguard pki``: the certificate lifecycle (docs/pki.md). ``pki acme|scep status`` shows when the
``[acme]`` / ``[scep]`` certificate is renewed next and how the last attempt went; ``pki acme|scep renew``
renews it now through the running gateway (which writes the file, audits ``pki.issued`` and reloads
without dropping SAs).
``pki init / issue / revoke / crl / list`` run a small VPN CA (``pki/ca.py``) whose key may be in a
PKCS#11 token; each writes to the CA's own audit trail (``pki.issued``, ``pki.revoked``, ``pki.crl``)."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import signal
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.service import AuditService
from ikeguard.control.cli_gateway import _fail, _print_json, call, gateway_options
from ikeguard.crypto.pkcs11_key import ACCESS_LOG, TokenError, is_pkcs11_uri, open_token_key, safe_uri_text
from ikeguard.pki.ca import REASONS, CaError, CertificateAuthority
from ikeguard.pki.hsm_log import access_events
from ikeguard.pki.ocsp_responder import OcspResponder, serve_file, serve_ocsp
from ikeguard.policy.values import parse_duration


def _when(ts: float) -> str:
    if not ts or ts == float("inf"):
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    click.echo(f"certificate valid until {_when(result.get('not_after', 0))}; "
               f"next renewal attempt {_when(result.get('next_attempt', 0))}")
    if result.get("failures"):
        click.echo(f"{result['failures']} failed attempt(s) in a row; last: {result.get('last_error')}")


@click.group("pki")
def pki() -> None:
    """Certificates of the gateway: ACME and SCEP enrolment and renewal (docs/pki.md)."""


@pki.group("acme")
def acme() -> None:
    """The [acme] certificate (RFC 8555) of the running gateway."""


@acme.command("status")
@gateway_options
def status(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """When the certificate expires and is renewed next; failed attempts."""
    _show(call(config, socket_path, "acme", action="status")["result"], as_json)


@acme.command("renew")
@gateway_options
def renew(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Renew the certificate now (the gateway orders it, writes it and uses it from the next IKE_AUTH)."""
    _show(call(config, socket_path, "acme", action="renew")["result"], as_json)


@pki.group("scep")
def scep() -> None:
    """The [scep] certificate (RFC 8894) of the running gateway."""


@scep.command("status")
@gateway_options
def scep_status(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """When the certificate expires and is renewed next; failed attempts."""
    _show(call(config, socket_path, "scep", action="status")["result"], as_json)


@scep.command("renew")
@gateway_options
def scep_renew(config: Path | None, socket_path: Path | None, as_json: bool) -> None:
    """Renew the certificate now (RenewalReq signed with the current certificate; used from the next
    IKE_AUTH)."""
    _show(call(config, socket_path, "scep", action="renew")["result"], as_json)


# -- the small VPN CA (pki/ca.py) ------------------------------------------------------------------------
def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid:{os.getuid()}"


def _duration(text: str) -> dt.timedelta:
    try:
        return dt.timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _open_ca(directory: Path, key_ref: str | None = None) -> CertificateAuthority:
    """The CA of ``directory`` with its key open (a file, or a PKCS#11 URI whose PIN comes from its
    pin-source); exits 1 with one line when the key cannot be used."""
    ca = CertificateAuthority(directory)
    ref = key_ref or ca.meta("key") if ca.db_path.exists() or key_ref else None
    if not ref:
        _fail(f"no CA in {directory} (run `ikeguard pki init` first)", 1)
    try:
        if is_pkcs11_uri(ref):
            ca.key = open_token_key(ref, base=directory)
        else:
            path = Path(ref) if Path(ref).is_absolute() else directory / ref
            key: Any = serialization.load_pem_private_key(path.read_bytes(), password=None)
            ca.key = key
    except (TokenError, OSError, ValueError, TypeError) as exc:
        what = safe_uri_text(ref) if is_pkcs11_uri(ref) else ref
        if is_pkcs11_uri(ref) and ca.db_path.exists():  # a refused login on the CA key: the HSM access log
            _audit(directory, AuditEvent(EventName.HSM_ERROR, Outcome.FAILURE, reason=str(exc),
                                         admin=_user(), details={"key": what}))
        _fail(f"the CA key {what} cannot be used: {exc}", 1)
    return ca


def _ca_fail(directory: Path, message: str) -> NoReturn:
    """``_fail`` after the CA key was used: what the token noted (a signature error) goes to the trail."""
    _audit(directory)
    _fail(message, 1)


def _audit(directory: Path, *events: AuditEvent) -> None:
    """The CA's own audit trail (``DIR/audit``; ``ikeguard audit verify --state-dir DIR/audit``): ``events``
    after the HSM access log of this command (the CA key's logins, signatures and errors, pki/hsm_log.py)."""
    events = (*access_events(ACCESS_LOG.drain()), *events)
    if not events:
        return
    service = AuditService(directory / "audit")
    service.start()
    try:
        for event in events:
            service.record(event)
        if not service.flush(10):
            _fail(f"the CA's audit trail in {directory / 'audit'} did not record the event", 1)
    finally:
        service.close()


def _cert_event(name: EventName, cert: x509.Certificate, reason: str,
                **details: str | int | bool) -> AuditEvent:
    return AuditEvent(name, Outcome.SUCCESS, reason=reason, admin=_user(),
                      cert_subject=cert.subject.rfc4514_string(), cert_serial=format(cert.serial_number, "x"),
                      cert_issuer=cert.issuer.rfc4514_string(), details=details)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


_DIR = click.option("--dir", "directory", type=click.Path(path_type=Path), required=True,
                    help="The CA's directory (ca.pem, ca.db, audit/).")


@pki.command("init")
@_DIR
@click.option("--key", "key_ref", required=True,
              help="The CA's private key: a PEM file or a PKCS#11 URI (RFC 7512, e.g. a SoftHSM2 key).")
@click.option("--dn", required=True, help='Distinguished name, e.g. "C=US, O=Example, CN=Example VPN CA".')
@click.option("--lifetime", default="3650d", show_default=True, help="Validity of the CA certificate.")
@click.option("--csr", "csr_out", type=click.Path(dir_okay=False, path_type=Path),
              help="A subordinate CA instead: write the request for the enterprise root here "
                   "(then `pki install`).")
def init(directory: Path, key_ref: str, dn: str, lifetime: str, csr_out: Path | None) -> None:
    """Create a root CA, or request a subordinate one, whose key stays where it is (a file or a token)."""
    ca = _open_ca(directory, key_ref)
    if csr_out is not None:
        try:
            request = ca.request(dn, key_ref)
        except CaError as exc:
            _ca_fail(directory, str(exc))
        _write(csr_out, request.public_bytes(serialization.Encoding.PEM))
        click.echo(f"request for {request.subject.rfc4514_string()} -> {csr_out}: have the enterprise root "
                   "sign it, then `ikeguard pki install`")
        return
    try:
        cert = ca.init(dn, key_ref, now=dt.datetime.now(dt.UTC), lifetime=_duration(lifetime))
    except CaError as exc:
        _ca_fail(directory, str(exc))
    _audit(directory, _cert_event(EventName.PKI_ISSUED, cert, "CA certificate created", source="ca",
                                  kind="root", not_after=cert.not_valid_after_utc.isoformat()))
    click.echo(f"CA {cert.subject.rfc4514_string()} in {ca.cert_path}")


@pki.command("install")
@_DIR
@click.argument("cert_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def install(directory: Path, cert_path: Path) -> None:
    """Install the subordinate CA certificate the enterprise root issued for `pki init --csr` (PEM; the
    certificates after the first are the chain above it)."""
    ca = _open_ca(directory)
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
        ca.install(chain[0], chain[1:])
    except (ValueError, CaError) as exc:
        _fail(f"{cert_path}: {exc}", 1)
    _audit(directory, _cert_event(EventName.PKI_ISSUED, chain[0], "subordinate CA certificate installed",
                                  source="external", kind="subordinate",
                                  not_after=chain[0].not_valid_after_utc.isoformat()))
    click.echo(f"CA {chain[0].subject.rfc4514_string()} (issued by {chain[0].issuer.rfc4514_string()}) "
               f"in {ca.cert_path}")


@pki.command("issue")
@_DIR
@click.option("--dn", required=True, help="Subject DN of the device.")
@click.option("--san", "sans", multiple=True, help="subjectAltName: FQDN, IP, user@domain (the IKE id).")
@click.option("--pub", "pub_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The device's public key (PEM/DER SubjectPublicKeyInfo, `pki --pub`) or its CSR.")
@click.option("--lifetime", default="24h", show_default=True, help="Validity (short-lived by default).")
@click.option("--crl-uri", "crl_uris", multiple=True, help="CRL distribution point to embed.")
@click.option("--ocsp-uri", "ocsp_uris", multiple=True, help="OCSP responder to embed (AIA).")
@click.option("--server", is_flag=True, help="serverAuth instead of clientAuth next to ipsecIKE.")
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path),
              help="No --pub: generate the device's ECDSA P-384 key here (mode 0600) and certify it.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def issue(directory: Path, dn: str, sans: tuple[str, ...], pub_path: Path | None, lifetime: str,
          crl_uris: tuple[str, ...], ocsp_uris: tuple[str, ...], server: bool, key_out: Path | None,
          out: Path) -> None:
    """Issue a device certificate for a public key (the device keeps its private key), or for a new
    ECDSA P-384 key (--key-out) for devices that cannot make one."""
    if (pub_path is None) == (key_out is None):
        _fail("give the device's public key or CSR with --pub, or --key-out for a new key", 2)
    if key_out is not None:
        fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        device_key = ec.generate_private_key(ec.SECP384R1())
        with os.fdopen(fd, "wb") as fh:
            fh.write(device_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        pub_path = key_out.with_name(key_out.name + ".pub")
        pub_path.write_bytes(device_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert pub_path is not None
    data = pub_path.read_bytes()
    try:
        if b"CERTIFICATE REQUEST" in data:
            request = x509.load_pem_x509_csr(data)
            if not request.is_signature_valid:
                _fail(f"{pub_path}: the CSR's signature does not verify", 1)
            public: Any = request.public_key()
        else:
            public = (serialization.load_pem_public_key(data) if b"-----BEGIN" in data
                      else serialization.load_der_public_key(data))
    except ValueError as exc:
        _fail(f"{pub_path}: not a public key or CSR: {exc}", 2)
    ca = _open_ca(directory)
    try:
        cert = ca.issue(dn, public, sans, now=dt.datetime.now(dt.UTC), lifetime=_duration(lifetime),
                        crl_uris=crl_uris, ocsp_uris=ocsp_uris, server=server)
    except CaError as exc:
        _ca_fail(directory, str(exc))
    _write(out, cert.public_bytes(serialization.Encoding.PEM))
    _audit(directory, _cert_event(EventName.PKI_ISSUED, cert, "device certificate issued", source="ca",
                                  kind="device", not_after=cert.not_valid_after_utc.isoformat(),
                                  sans=",".join(sans)))
    click.echo(f"issued {format(cert.serial_number, 'x')} {cert.subject.rfc4514_string()} until "
               f"{cert.not_valid_after_utc.isoformat()} -> {out}")


@pki.command("revoke")
@_DIR
@click.argument("serial")
@click.option("--reason", type=click.Choice(sorted(REASONS)), help="RFC 5280 §5.3.1 reason code.")
def revoke(directory: Path, serial: str, reason: str | None) -> None:
    """Revoke a certificate this CA issued (the next `pki crl` lists it)."""
    ca = CertificateAuthority(directory)
    try:
        record = ca.revoke(serial, now=dt.datetime.now(dt.UTC), reason=reason)
    except CaError as exc:
        _fail(str(exc), 1)
    _audit(directory, AuditEvent(EventName.PKI_REVOKED, Outcome.SUCCESS, reason=reason or "unspecified",
                                 admin=_user(), cert_subject=record.subject, cert_serial=record.serial,
                                 cert_issuer=ca.cert.subject.rfc4514_string(),
                                 details={"not_after": record.not_after}))
    click.echo(f"revoked {record.serial} {record.subject}")


@pki.command("crl")
@_DIR
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to publish the CRL (replaced atomically; point authorities.*.crls or a web server "
                   "serving crl_uris at it).")
@click.option("--next-update", default="1h", show_default=True)
@click.option("--der", is_flag=True, help="DER instead of PEM.")
def crl(directory: Path, out: Path, next_update: str, der: bool) -> None:
    """Sign and publish a CRL of the revoked certificates."""
    ca = _open_ca(directory)
    try:
        signed = ca.crl(now=dt.datetime.now(dt.UTC), next_update=_duration(next_update))
    except CaError as exc:
        _ca_fail(directory, str(exc))
    _write(out, signed.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    _write(directory / "crl.der", signed.public_bytes(serialization.Encoding.DER))  # what crl-serve serves
    number = signed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    _audit(directory, AuditEvent(EventName.PKI_CRL, Outcome.SUCCESS, reason=f"CRL {number} published",
                                 admin=_user(), cert_issuer=ca.cert.subject.rfc4514_string(),
                                 details={"crl_number": number, "revoked": len(list(signed)),
                                          "next_update": (signed.next_update_utc or dt.datetime.now(dt.UTC))
                                          .isoformat(), "file": str(out)}))
    click.echo(f"CRL {number} with {len(list(signed))} revoked certificate(s) -> {out}")


@pki.command("list")
@_DIR
@click.option("--json", "as_json", is_flag=True)
def list_certs(directory: Path, as_json: bool) -> None:
    """Inventory: subject, serial, key type, not-after, status."""
    now = dt.datetime.now(dt.UTC)
    records = CertificateAuthority(directory).records()
    if as_json:
        _print_json([{**r.__dict__, "status": r.status(now)} for r in records])
        return
    for r in records:
        click.echo(f"{r.serial}  {r.status(now):8} {r.key_type:11} {r.not_after}  {r.subject}  {r.sans}")


def _responder(ca: CertificateAuthority, directory: Path, now: dt.datetime) -> tuple[x509.Certificate, Any]:
    """The delegated OCSP responder's key and certificate (``DIR/ocsp-responder.{key,pem}``), made or
    re-issued (7 days) through the CA key when missing or within a day of its end."""
    key_path, cert_path = directory / "ocsp-responder.key", directory / "ocsp-responder.pem"
    if not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key: Any = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if cert_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - now > dt.timedelta(days=1) and \
                cert.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo) == \
                key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
            return cert, key
    names = ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ca_name = str(names[0].value) if names else "CA"
    dn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{ca_name} OCSP responder")])
    try:
        cert = ca.issue(dn, key.public_key(), (), now=now, lifetime=dt.timedelta(days=7), ocsp_signing=True)
    except CaError as exc:
        _ca_fail(directory, str(exc))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _audit(directory, _cert_event(EventName.PKI_ISSUED, cert, "OCSP responder certificate issued",
                                  source="ca", kind="ocsp-responder",
                                  not_after=cert.not_valid_after_utc.isoformat()))
    return cert, key


@pki.command("crl-serve")
@_DIR
@click.option("--listen", default="127.0.0.1:8081", show_default=True, help="ADDRESS:PORT to serve HTTP on.")
def crl_serve(directory: Path, listen: str) -> None:
    """Serve the CA's latest CRL (the last `pki crl`) over HTTP, for `crl_uris` and `--crl-uri`."""
    host, _, port = listen.rpartition(":")
    server = serve_file(directory / "crl.der", "application/pkix-crl", (host.strip("[]"), int(port)))
    click.echo(f"CRL of {CertificateAuthority(directory).cert.subject.rfc4514_string()} on http://{listen}/",
               err=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@pki.command("ocsp-serve")
@_DIR
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="ADDRESS:PORT to serve HTTP on.")
@click.option("--validity", default="1h", show_default=True, help="nextUpdate of each answer.")
def ocsp_serve(directory: Path, listen: str, validity: str) -> None:
    """Serve OCSP (RFC 6960, HTTP GET and POST) for this CA, signed by a delegated responder certificate."""
    host, _, port = listen.rpartition(":")
    now = dt.datetime.now(dt.UTC)
    ca = _open_ca(directory)
    cert, key = _responder(ca, directory, now)
    _audit(directory)  # the CA key's login (and the responder certificate's signature, if it was re-issued)
    responder = OcspResponder(ca, cert, key, validity=_duration(validity))
    server = serve_ocsp(responder, (host.strip("[]"), int(port)))
    click.echo(f"OCSP responder for {ca.cert.subject.rfc4514_string()} on http://{listen}/", err=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
