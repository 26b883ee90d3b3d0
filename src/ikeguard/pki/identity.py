"""Whether a certificate proves an IKE identity (docs/reference.md; RFC 4945 §3.1, RFC 7296 §3.5).

The identity must appear in the subjectAltName (dNSName for FQDN, rfc822Name, iPAddress, directoryName for
DN) or, for DN identities, equal the subject DN; a key id matches the subjectKeyIdentifier or the SHA-1 of the
subject public key. There is no CN fallback, and wildcard SANs in certificates are not honoured (a device
certificate names its device). The identity is the one the peer claimed: given as text it is read with
``parse_peer_identity``, so ``%any`` or ``*.example.net`` from a peer are literal names that no certificate
proves by pattern (S4 of issue 13). A configured pattern (``*.merchants.example.net``, ``CN=*, O=M``) or
``%any`` may be given as a parsed ``Identity``: then some certificate name must match it. Certificate names
are literal too (``Identity.matches`` is the one matching rule). Written by hand over ``policy.identity``.
"""

from __future__ import annotations

import contextlib

from cryptography import x509

from ikeguard.policy.identity import Identity, IdentityKind, parse_peer_identity


def _san(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san)


def _as_identity(text: str) -> Identity | None:
    try:
        return parse_peer_identity(text)
    except ValueError:
        return None


def _key_ids(cert: x509.Certificate) -> set[str]:
    ids = {x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()}
    with contextlib.suppress(x509.ExtensionNotFound):
        ids.add(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex())
    return ids


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """The identities a certificate proves, in the contract's text syntax (subject DN first, then SANs)."""
    found: list[str] = []
    if len(cert.subject) > 0:
        found.append(cert.subject.rfc4514_string())
    for name in _san(cert):
        if isinstance(name, x509.DNSName | x509.RFC822Name):
            found.append(name.value)
        elif isinstance(name, x509.IPAddress):
            found.append(str(name.value))
        elif isinstance(name, x509.DirectoryName):
            found.append(name.value.rfc4514_string())
    return found


def _mail_equal(a: str, b: str) -> bool:
    local_a, _, domain_a = a.rpartition("@")
    local_b, _, domain_b = b.rpartition("@")
    return local_a == local_b and domain_a.lower() == domain_b.lower()


def identity_in_certificate(identity: str | Identity, cert: x509.Certificate) -> bool:
    """Whether ``cert`` proves ``identity``: a peer's identity as text (literal, never a pattern), or a
    parsed configured ``Identity`` (exact, a pattern some certificate name matches, or ``%any``)."""
    ident = parse_peer_identity(identity) if isinstance(identity, str) else identity
    kind = ident.kind
    if kind is IdentityKind.ANY:  # only a configured Identity can be %any
        return True
    if kind is IdentityKind.KEY_ID:
        return ident.parts[0] in _key_ids(cert)
    candidates: list[str] = []
    if kind is IdentityKind.DN:
        if len(cert.subject) > 0:
            candidates.append(cert.subject.rfc4514_string())
        candidates += [n.value.rfc4514_string() for n in _san(cert) if isinstance(n, x509.DirectoryName)]
    for name in _san(cert):
        if kind is IdentityKind.FQDN and isinstance(name, x509.DNSName) and "*" not in name.value:
            candidates.append(name.value)
        elif kind is IdentityKind.RFC822 and isinstance(name, x509.RFC822Name):
            if not ident.is_pattern and _mail_equal(ident.text, name.value):
                return True
            candidates.append(name.value)
        elif kind in (IdentityKind.IPV4, IdentityKind.IPV6) and isinstance(name, x509.IPAddress):
            candidates.append(str(name.value))
    for text in candidates:
        parsed = _as_identity(text)
        if parsed is not None and parsed.kind is kind and ident.matches(parsed):
            return True
    return False
