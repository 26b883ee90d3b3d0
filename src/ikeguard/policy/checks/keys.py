"""Checks on the keys the configuration names: each private key belongs to its certificate, keys and
pre-shared keys are younger than the profile's cryptoperiod (NIST SP 800-57 Pt 1 r5 §5.3), and the SIEM's TLS
link (RFC 5425) uses certificates and TLS settings NIST SP 800-52 Rev. 2 accepts for clients (§4.1-§4.3).

Key material never leaves this module: findings name files, key types and sizes, never key values.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ikeguard.crypto.key_names import describe_key
from ikeguard.crypto.pkcs11_key import TokenError, open_token_key, safe_uri_text
from ikeguard.policy.checks.base import CheckContext, Outcome, Target, conn_target, register
from ikeguard.policy.checks.keyfiles import is_token_key, load_private_key
from ikeguard.policy.checks.pki import load_certificates
from ikeguard.policy.profile import Rule

DAY = dt.timedelta(days=1)


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_cert_pairs(ctx: CheckContext) -> Iterator[tuple[str, str, str, Target | None]]:
    """(key path, key file, certificate file, quarantine target) of every key with its certificate."""
    model = ctx.config.model
    for name, conn in model.connections.items():
        if conn.local.key and conn.local.certs and not is_token_key(conn.local.key):
            yield f"connections.{name}.local.key", conn.local.key, conn.local.certs[0], conn_target(name)
    for i, sink in enumerate(model.audit.sinks):
        if sink.key and sink.cert:
            yield f"audit.sinks[{i}].key", sink.key, sink.cert, None


def _token_key_match(ctx: CheckContext) -> Iterator[Outcome]:
    """A ``local.key`` in a PKCS#11 token (RFC 7512 URI): log in as ``run`` does (PIN from its source) and
    compare the token's public key with the certificate's. Wrong PIN, missing token, module or key object: the
    one line ``run`` would stop with (never the PIN). The private key stays in the token. Only for ``check``
    (``ctx.open_tokens``): at enforcement ``run`` opens the token itself when it builds its plan."""
    if not ctx.open_tokens:
        return
    for name, conn in ctx.config.model.connections.items():
        if not (conn.local.key and conn.local.certs and is_token_key(conn.local.key)):
            continue
        scope, cert_file = f"connections.{name}.local.key", conn.local.certs[0]
        cert_path = ctx.config.resolve(cert_file)
        certs = load_certificates(cert_path) if cert_path.is_file() else []
        if not certs:
            continue  # files.present / cert.key report it
        value = f"{safe_uri_text(conn.local.key)} / {cert_file}"
        try:
            key = open_token_key(conn.local.key, base=ctx.config.base_dir)
        except TokenError as exc:
            yield Outcome(scope, False, value, f"the token key cannot be used: {exc}", file=ctx.file,
                          target=conn_target(name))
            continue
        if _spki(key.public_key()) != _spki(certs[0].public_key()):
            yield Outcome(scope, False, value, f"the token's key does not belong to the certificate "
                          f"{certs[0].subject.rfc4514_string()} ({describe_key(certs[0])})", file=ctx.file,
                          target=conn_target(name))
        else:
            yield Outcome(scope, True,
                          f"{value}: the token's key is the certificate's ({describe_key(certs[0])})")


@register("key_match")
def check_key_match(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Each private key is the one its certificate certifies (same public key): a mismatched pair cannot sign
    IKE AUTH (RFC 7296 §2.15) or authenticate the TLS client to the SIEM (RFC 5425 §5.3). Keys in a PKCS#11
    token are checked through the token (``_token_key_match``)."""
    out: list[Outcome] = list(_token_key_match(ctx))
    for scope, key_file, cert_file, target in key_cert_pairs(ctx):
        key_path, cert_path = ctx.config.resolve(key_file), ctx.config.resolve(cert_file)
        if not key_path.is_file() or not cert_path.is_file():
            continue  # files.present reports it
        certs = load_certificates(cert_path)
        key = load_private_key(key_path)
        if not certs:
            continue  # cert.key / audit.siem-tls report it
        value = f"{key_file} / {cert_file}"
        if key is None:
            out.append(
                Outcome(
                    scope,
                    False,
                    value,
                    "the private key cannot be read (encrypted, or not a PEM/DER private key)",
                    file=ctx.file,
                    target=target,
                )
            )
        elif _spki(key.public_key()) != _spki(certs[0].public_key()):
            out.append(
                Outcome(
                    scope,
                    False,
                    value,
                    f"the private key does not belong to the certificate "
                    f"{certs[0].subject.rfc4514_string()} ({describe_key(certs[0])})",
                    file=ctx.file,
                    target=target,
                )
            )
        else:
            out.append(
                Outcome(scope, True, f"{value}: the key is the certificate's ({describe_key(certs[0])})")
            )
    return out


def _age(ctx: CheckContext, path: Path) -> dt.timedelta | None:
    try:
        mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
    except OSError:
        return None
    return ctx.now - mtime


def _days(delta: dt.timedelta) -> str:
    return f"{max(0, delta // DAY)} days"


@register("key_age")
def check_key_age(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Private keys at most ``key_max_days`` old and pre-shared keys at most ``psk_max_days``
    (cryptoperiods, NIST SP 800-57 Pt 1 r5 §5.3). A key with a certificate is dated by the certificate's
    notBefore (a key reused across renewals is older than that: rotation is then not shown by this check);
    other keys and PSK files by the file's modification time; an inline secret by the configuration
    file's. A key in a PKCS#11 token (RFC 7512 URI) is dated by its certificate only (it has no file). Each
    finding says which."""
    key_max = dt.timedelta(days=int(rule.params.get("key_max_days", 1095)))
    psk_max = dt.timedelta(days=int(rule.params.get("psk_max_days", 730)))
    out: list[Outcome] = []
    certified = {scope: cert for scope, _, cert, _ in key_cert_pairs(ctx)}
    model = ctx.config.model
    keys: list[tuple[str, str, Target | None]] = []
    for n, c in model.connections.items():
        if not c.local.key:
            continue
        if is_token_key(c.local.key):
            if not c.local.certs:
                continue  # no certificate, no file: nothing dates a token key
            certified[f"connections.{n}.local.key"] = c.local.certs[0]
            keys.append((f"connections.{n}.local.key", safe_uri_text(c.local.key), conn_target(n)))
        else:
            keys.append((f"connections.{n}.local.key", c.local.key, conn_target(n)))
    keys += [(f"audit.sinks[{i}].key", s.key, None) for i, s in enumerate(model.audit.sinks) if s.key]
    for scope, key_file, target in keys:
        cert_file = certified.get(scope)
        certs = load_certificates(ctx.config.resolve(cert_file)) if cert_file else []
        if certs:
            age, basis = ctx.now - certs[0].not_valid_before_utc, f"certificate {cert_file} notBefore"
        elif is_token_key(key_file):
            continue  # its certificate is missing: files.present / cert.key report it
        else:
            found = _age(ctx, ctx.config.resolve(key_file))
            if found is None:
                continue  # files.present reports it
            age, basis = found, f"{key_file} modification time"
        ok = age <= key_max
        out.append(
            Outcome(
                scope,
                ok,
                f"{key_file}: {_days(age)} old (by {basis})",
                ""
                if ok
                else f"older than the profile's {key_max.days}-day cryptoperiod for private "
                "keys: issue a new key",
                file=ctx.file,
                target=target,
            )
        )
    for name, secret in model.secrets.ike.items():
        scope = f"secrets.ike.{name}"
        if secret.secret_file:
            found, basis = (
                _age(ctx, ctx.config.resolve(secret.secret_file)),
                f"{secret.secret_file} modification time",
            )
        else:
            found, basis = (
                _age(ctx, ctx.config.path),
                "the configuration file's modification time (inline secret)",
            )
        if found is None:
            continue
        ok = found <= psk_max
        out.append(
            Outcome(
                scope,
                ok,
                f"{_days(found)} old (by {basis})",
                ""
                if ok
                else f"older than the profile's {psk_max.days}-day cryptoperiod for "
                "pre-shared keys: rotate the key with the peer",
                file=ctx.file,
            )
        )
    return out


def _tls_key_problem(cert: x509.Certificate, rsa_min: int, curves: set[str]) -> str | None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return None if key.key_size >= rsa_min else f"RSA-{key.key_size}: below {rsa_min} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in curves else f"curve {key.curve.name} not allowed"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA keys are not in NIST SP 800-52r2's TLS 1.2 certificate profile"
    return f"{describe_key(cert)} keys are not allowed"


WEAK_SUITE_PARTS = ("RC4", "DES", "NULL", "EXPORT", "MD5", "anon")


@register("siem_tls")
def check_siem_tls(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Each syslog-tls sink: our client certificate and the SIEM CA certificate have keys of at least
    ``rsa_min_bits`` / an allowed curve and SHA-2 signatures (SP 800-52r2 §4.2); the link offers TLS 1.2 at
    least (§4.1) and only forward-secret suites without RC4/3DES/NULL/MD5/SHA-1 MACs (§4.3), as the TLS
    context ikeguard's forwarder builds (``audit/sinks/transport.py``) shows."""
    from ikeguard.audit.sinks.transport import TlsTarget

    rsa_min = int(rule.params.get("rsa_min_bits", 2048))
    curves = set(rule.params.get("ec_curves", ["secp256r1", "secp384r1", "secp521r1"]))
    hashes = set(rule.params.get("signature_hashes", ["sha256", "sha384", "sha512"]))
    out: list[Outcome] = []
    for i, sink in enumerate(ctx.config.model.audit.sinks):
        if sink.type != "syslog-tls":
            continue
        for key in ("cert", "ca"):
            relative = getattr(sink, key)
            scope = f"audit.sinks[{i}].{key}"
            path = ctx.config.resolve(relative)
            if not path.is_file():
                continue  # files.present reports it
            certs = load_certificates(path)
            if not certs:
                out.append(
                    Outcome(scope, False, relative, "no PEM or DER certificate in this file", file=ctx.file)
                )
                continue
            for cert in certs:
                label = f"{relative}: {cert.subject.rfc4514_string()} ({describe_key(cert)})"
                problem = _tls_key_problem(cert, rsa_min, curves)
                algorithm = cert.signature_hash_algorithm
                self_signed = cert.issuer == cert.subject
                if (
                    problem is None
                    and not self_signed
                    and algorithm is not None
                    and algorithm.name not in hashes
                ):
                    problem = f"signed with {algorithm.name} (expected {', '.join(sorted(hashes))})"
                out.append(Outcome(scope, problem is None, label, problem or "", file=ctx.file))
        ca = ctx.config.resolve(sink.ca) if sink.ca else None
        if ca is None or not ca.is_file() or sink.address is None:
            continue
        host, _, port = str(sink.address).rpartition(":")
        try:
            context = TlsTarget(host.strip("[]"), int(port), ca).context()
        except (OSError, ValueError, ssl.SSLError) as exc:
            out.append(
                Outcome(f"audit.sinks[{i}]", False, str(sink.address), f"TLS context: {exc}", file=ctx.file)
            )
            continue
        suites = context.get_ciphers()
        forbidden = (*WEAK_SUITE_PARTS, *[str(p) for p in rule.params.get("forbid_suites", [])])
        weak = [
            s["name"]
            for s in suites
            if s.get("protocol") != "TLSv1.3"
            and (
                any(p in s["name"] for p in forbidden)
                or not s.get("kea", "").endswith(("ecdhe", "dhe"))
                or (s.get("digest") in ("sha1", "md5")
                and not s.get("aead"))
            )
        ]
        versions = f"TLS {context.minimum_version.name.removeprefix('TLSv').replace('_', '.')} minimum"
        ok = context.minimum_version >= ssl.TLSVersion.TLSv1_2 and not weak
        out.append(
            Outcome(
                f"audit.sinks[{i}]",
                ok,
                f"{sink.address}: {versions}, {len(suites)} cipher suites",
                "" if ok else f"suites NIST SP 800-52r2 §4.3 does not allow: {', '.join(weak)}",
                file=ctx.file,
            )
        )
    return out
