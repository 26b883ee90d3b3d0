"""Checks on the certificates and CRLs the config names: key type/size, signature hash, validity,
key usage/EKU, chain to a configured authority, CRLs current (RFC 5280 §4.2.1.3, §4.2.1.12, §6).

Parsing and signature verification use ``cryptography``; missing files are left to ``files.present``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ikeguard.crypto.key_names import describe_key
from ikeguard.policy.checks.base import CheckContext, Outcome, Target, conn_target, register
from ikeguard.policy.eku import EkuMode, describe_ekus, eku_problem
from ikeguard.policy.profile import Rule
from ikeguard.policy.values import parse_duration


@dataclass(frozen=True)
class NamedCert:
    """A certificate with where it came from in the config."""

    scope: str
    file: str
    cert: x509.Certificate
    role: str  # "leaf", "intermediate", "authority"
    target: Target | None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """All certificates in a PEM file (or one DER certificate); [] when unreadable or not a certificate."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        return []


def load_crl(path: Path) -> x509.CertificateRevocationList | None:
    """A PEM or DER CRL, or None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        return None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def named_certificates(ctx: CheckContext) -> list[NamedCert]:
    """Every certificate the config names, loaded once per evaluation."""
    cached = ctx.cache.get("certs")
    if cached is not None:
        return list(cached)
    model = ctx.config.model
    out: list[NamedCert] = []
    for name, auth in model.authorities.items():
        for cert in load_certificates(ctx.config.resolve(auth.cacert)):
            out.append(NamedCert(f"authorities.{name}.cacert", auth.cacert, cert, "authority", None))
    for name, conn in model.connections.items():
        for i, ca in enumerate(conn.remote.cacerts):
            if ca not in model.authorities:
                for cert in load_certificates(ctx.config.resolve(ca)):
                    out.append(NamedCert(f"connections.{name}.remote.cacerts[{i}]", ca, cert, "authority",
                                         conn_target(name)))
        first = True
        for i, path in enumerate(conn.local.certs):
            for cert in load_certificates(ctx.config.resolve(path)):
                role = "leaf" if first else "intermediate"
                first = False
                scope = f"connections.{name}.local.certs[{i}]"
                out.append(NamedCert(scope, path, cert, role, conn_target(name)))
    ctx.cache["certs"] = out
    return out


def _label(nc: NamedCert) -> str:
    return f"{nc.file}: {_subject(nc.cert)}"


def unparseable_files(ctx: CheckContext) -> list[tuple[str, str, str]]:
    """(key path, file, problem) of certificate files that are missing or hold no certificate: the
    certificate rules cannot pass for them (``files.present`` names the missing file too)."""
    model = ctx.config.model
    refs = [(f"authorities.{n}.cacert", a.cacert) for n, a in model.authorities.items()]
    for name, conn in model.connections.items():
        refs += [(f"connections.{name}.local.certs[{i}]", c) for i, c in enumerate(conn.local.certs)]
        refs += [(f"connections.{name}.remote.cacerts[{i}]", c) for i, c in enumerate(conn.remote.cacerts)
                 if c not in model.authorities]
    out = []
    for scope, f in refs:
        path = ctx.config.resolve(f)
        if not path.is_file():
            out.append((scope, f, "certificate file not found: its key, signature and validity are not "
                                  "verified"))
        elif not load_certificates(path):
            out.append((scope, f, "no PEM or DER certificate in this file"))
    return out


@register("cert_key")
def check_cert_key(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Key type and size allowed by the profile (files that hold no certificate fail here too)."""
    rsa_min = int(rule.params.get("rsa_min_bits", 3072))
    curves = set(rule.params.get("ec_curves", []))
    out: list[Outcome] = [
        Outcome(scope, False, f, problem, file=ctx.file,
                target=conn_target(scope.split(".")[1]) if scope.startswith("connections.") else None)
        for scope, f, problem in unparseable_files(ctx)]
    for nc in named_certificates(ctx):
        key = nc.cert.public_key()
        desc = describe_key(nc.cert)
        problem = None
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < rsa_min:
                problem = f"RSA key of {key.key_size} bits; the profile requires at least {rsa_min}"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name not in curves:
                problem = f"curve {key.curve.name} not allowed (expected {', '.join(sorted(curves))})"
        elif isinstance(key, ed25519.Ed25519PublicKey):
            problem = None if rule.params.get("ed25519", False) else "Ed25519 keys not allowed by the profile"
        elif isinstance(key, ed448.Ed448PublicKey):
            problem = None if rule.params.get("ed448", False) else "Ed448 keys not allowed by the profile"
        else:
            problem = f"{desc} keys are not allowed"
        out.append(Outcome(nc.scope, problem is None, f"{_label(nc)} ({desc})", problem or "",
                           file=ctx.file, target=nc.target))
    return out


@register("cert_signature_hash")
def check_cert_signature_hash(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Signature hash of every non-self-signed certificate allowed (EdDSA signs without a separate hash)."""
    allowed = set(rule.params.get("allowed", []))
    out: list[Outcome] = []
    for nc in named_certificates(ctx):
        if _is_self_signed(nc.cert):
            continue  # a trust anchor's self-signature is not relied upon (RFC 5280 §6.1)
        algorithm = nc.cert.signature_hash_algorithm
        name = algorithm.name if algorithm is not None else "none (EdDSA)"
        ok = algorithm is None or name in allowed
        out.append(Outcome(nc.scope, ok, f"{_label(nc)} (signed with {name})",
                           "" if ok else f"signature hash {name} not allowed (expected "
                           f"{', '.join(sorted(allowed))})", file=ctx.file, target=nc.target))
    return out


@register("cert_validity")
def check_cert_validity(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Valid now; a warning when fewer than ``warn_days`` remain."""
    warn = dt.timedelta(days=int(rule.params.get("warn_days", 14)))
    out: list[Outcome] = []
    for nc in named_certificates(ctx):
        start, end = nc.cert.not_valid_before_utc, nc.cert.not_valid_after_utc
        value = f"{_label(nc)} (valid {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC)"
        if ctx.now < start:
            out.append(Outcome(nc.scope, False, value, "not valid yet", file=ctx.file, target=nc.target))
        elif ctx.now > end:
            out.append(Outcome(nc.scope, False, value, "expired", file=ctx.file, target=nc.target))
        elif end - ctx.now < warn:
            left = end - ctx.now
            out.append(Outcome(nc.scope, True, value, f"expires in {left.days} d {left.seconds // 3600} h",
                               warning=True, file=ctx.file))
        else:
            out.append(Outcome(nc.scope, True, value))
    return out


@register("cert_lifetime")
def check_cert_lifetime(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Our device (end-entity) certificates: notAfter - notBefore not above the rule's ``max`` (a profile's
    short-lived certificate limit); CA certificates are not judged here."""
    limit = dt.timedelta(seconds=parse_duration(rule.params.get("max", "398d")))
    out: list[Outcome] = []
    for nc in named_certificates(ctx):
        if nc.role != "leaf":
            continue
        life = nc.cert.not_valid_after_utc - nc.cert.not_valid_before_utc
        value = f"{_label(nc)} (lifetime {_span(life)})"
        ok = life <= limit
        out.append(Outcome(nc.scope, ok, value, "" if ok else f"lifetime {_span(life)} is above the "
                           f"profile's limit of {_span(limit)} for device certificates", file=ctx.file,
                           target=nc.target))
    return out


def _span(span: dt.timedelta) -> str:
    return f"{span.days} d" if span.days >= 2 else f"{span.total_seconds() / 3600:g} h"


@register("cert_usage")
def check_cert_usage(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """End-entity certificates: digitalSignature in keyUsage (if present, RFC 4945 §5.1.3.2) and an
    extendedKeyUsage peers accept (RFC 4945 §5.1.3.12, judged by ``policy.eku``, the rule the validator
    applies to peers); each pubkey connection's ``remote.eku`` is reported, and must be ``strict`` when the
    rule's ``eku`` parameter says so."""
    required = EkuMode(str(rule.params.get("eku", EkuMode.RELAXED)))
    out: list[Outcome] = []
    for nc in named_certificates(ctx):
        if nc.role != "leaf":
            continue
        problem = None
        try:
            ku = nc.cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not ku.digital_signature:
                problem = "keyUsage lacks digitalSignature (needed to sign IKE AUTH)"
        except x509.ExtensionNotFound:
            pass
        warning = ""
        try:
            extension = nc.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            present = {oid.dotted_string for oid in extension.value}
            problem = problem or eku_problem(present, critical=extension.critical, mode=required)
            strict = eku_problem(present, critical=extension.critical, mode=EkuMode.STRICT)
            if problem is None and strict is not None:
                warning = (f"extendedKeyUsage {describe_ekus(present)} without ipsecIKE: strongSwan, "
                           "libreswan, Windows and ikeguard (remote.eku = \"relaxed\", the default) accept "
                           "it; peers applying RFC 4945 §5.1.3.12 strictly (ikeguard with "
                           "remote.eku = \"strict\") refuse it; add ipsecIKE (1.3.6.1.5.5.7.3.17)")
        except x509.ExtensionNotFound:
            pass
        out.append(Outcome(nc.scope, problem is None, _label(nc), problem or warning, warning=bool(warning),
                           file=ctx.file, target=nc.target))
    for name, conn in ctx.config.model.connections.items():
        if conn.remote.auth != "pubkey":
            continue
        mode = EkuMode(conn.remote.eku)
        ok = required is EkuMode.RELAXED or mode is EkuMode.STRICT
        out.append(Outcome(f"connections.{name}.remote.eku", ok, mode.value,
                           "" if ok else "the profile requires remote.eku = \"strict\" (any EKU of a peer "
                           "certificate must contain ipsecIKE or anyExtendedKeyUsage, RFC 4945 §5.1.3.12)",
                           file=ctx.file, target=conn_target(name)))
    return out


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@register("cert_chain")
def check_cert_chain(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Each connection's certificate chains (via its own intermediates) to a configured authority."""
    certs = named_certificates(ctx)
    anchors = [nc.cert for nc in certs if nc.role == "authority"]
    out: list[Outcome] = []
    for leaf in (nc for nc in certs if nc.role == "leaf"):
        pool = [nc.cert for nc in certs if nc.role == "intermediate" and nc.target == leaf.target]
        current, ok = leaf.cert, False
        for _ in range(8):
            if any(_issued_by(current, a) for a in anchors):
                ok = True
                break
            nxt = next((c for c in pool if _issued_by(current, c)), None)
            if nxt is None:
                break
            current = nxt
        out.append(Outcome(leaf.scope, ok, _label(leaf),
                           "" if ok else f"no chain to a configured authority (issuer "
                           f"{leaf.cert.issuer.rfc4514_string()})", file=ctx.file, target=leaf.target))
    return out


def _crl_signed_by(crl: x509.CertificateRevocationList, anchor: x509.Certificate) -> bool:
    if crl.issuer != anchor.subject:
        return False
    try:
        return crl.is_signature_valid(anchor.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


@register("crl_current")
def check_crl_current(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """CRL files parse, are signed by their authority, are current, and do not revoke our own certs."""
    out: list[Outcome] = []
    certs = named_certificates(ctx)
    leaves = [nc for nc in certs if nc.role in ("leaf", "intermediate")]
    for name, auth in ctx.config.model.authorities.items():
        anchors = load_certificates(ctx.config.resolve(auth.cacert))
        for i, relative in enumerate(auth.crls):
            path = ctx.config.resolve(relative)
            if not path.exists():
                continue  # files.present reports it
            scope = f"authorities.{name}.crls[{i}]"
            crl = load_crl(path)
            if crl is None:
                out.append(Outcome(scope, False, relative, "not a CRL (PEM or DER)", file=ctx.file))
                continue
            if not any(_crl_signed_by(crl, a) for a in anchors):
                message = f"not signed by authority {name!r}"
                out.append(Outcome(scope, False, relative, message, file=ctx.file))
                continue
            next_update = crl.next_update_utc
            if next_update is None or next_update < ctx.now:
                when = f"{next_update:%Y-%m-%d %H:%M} UTC" if next_update else "never"
                out.append(Outcome(scope, False, relative, f"stale: nextUpdate {when} has passed",
                                   file=ctx.file))
                continue
            revoked = [nc for nc in leaves
                       if nc.cert.issuer == crl.issuer
                       and crl.get_revoked_certificate_by_serial_number(nc.cert.serial_number) is not None]
            for nc in revoked:
                out.append(Outcome(nc.scope, False, _label(nc), f"revoked by {relative}", file=ctx.file,
                                   target=nc.target))
            out.append(Outcome(scope, True, f"{relative} (next update {next_update:%Y-%m-%d %H:%M} UTC)"))
    return out
