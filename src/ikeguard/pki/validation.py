"""RFC 5280 §6.1 path validation for IKE peer certificates, built on ``cryptography`` with our own checks.

Why not ``cryptography``'s ``PolicyBuilder`` verifier: it implements the CA/Browser-Forum Web PKI
profile, so it refuses Ed25519 (and RSA-PSS with some parameters), demands serverAuth/clientAuth EKUs and
DNS/IP SANs, and cannot express IKE's rules (RFC 4945 §5.1.3.12's EKU rule, DN-only identities).
Why not ``pyhanko-certvalidator`` (well kept, handles Ed25519): it brings a second ASN.1 stack (asn1crypto)
beside ``cryptography``, an asyncio fetcher model, revocation policies that do not map onto swanctl's
strict/ifuri/relaxed, and failures as exception classes with prose, where the gateway needs stable
reason codes for its audit records. So: ``cryptography`` parses and verifies signatures (RSA PKCS#1 v1.5,
RSASSA-PSS, ECDSA, Ed25519, Ed448); this module, written by hand, does path building and the §6.1 checks
(validity, name chaining, signatures, basicConstraints cA and pathLenConstraint, keyUsage, name
constraints, certificate policies, critical extensions); RFC 4945 §5.1.3 adds the IKE EKU and keyUsage
rules; ``revocation`` does CRL/OCSP.
Pure: ``now`` is a parameter; the only I/O is what the injected ``RevocationSource`` does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from ikeguard.pki.algorithms import algorithm_problem, key_problem, key_type, signature_valid
from ikeguard.pki.constraints import PolicyState, is_self_issued, name_constraint_violation
from ikeguard.pki.identity import identity_in_certificate
from ikeguard.pki.reasons import (
    ReasonCode,
    RevocationState,
    ValidationFailure,
    ValidationResult,
    describe,
)
from ikeguard.pki.revocation import RevocationSource
from ikeguard.pki.validation_policy import RevocationMode, ValidationPolicy
from ikeguard.policy.eku import eku_problem

# Extensions whose semantics this module implements (RFC 5280 §4.2: a critical unknown one rejects).
UNDERSTOOD_EXTENSIONS = frozenset(
    oid.dotted_string
    for oid in (
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.OCSP_NO_CHECK,
    )
)


MAX_INTERMEDIATES = 32  # CERT payloads beyond this are ignored


class _Refused(Exception):
    def __init__(self, failure: ValidationFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _refuse(reason: ReasonCode, cert: x509.Certificate, detail: str) -> _Refused:
    return _Refused(ValidationFailure.about(reason, cert, detail))


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


_DER = Encoding.DER


# -- path building -----------------------------------------------------------------------------------------
@dataclass
class _Search:
    anchors: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate]
    max_depth: int
    bad_signature: x509.Certificate | None = None
    missing_issuer: x509.Certificate | None = None
    budget: int = 64  # signature verifications: a peer's pile of look-alike certificates stays cheap

    def paths(
        self, path: list[x509.Certificate], anchor_ders: set[bytes]
    ) -> Iterator[list[x509.Certificate]]:
        """Depth-first: anchors first (CA rollover: every anchor with the issuer's name is tried)."""
        cert = path[-1]
        issuers = [a for a in self.anchors if a.subject == cert.issuer]
        issuers += [i for i in self.intermediates if i.subject == cert.issuer and i.public_bytes(_DER)
                    not in anchor_ders and all(i != p for p in path)]
        if not issuers:
            self.missing_issuer = self.missing_issuer or cert
            return
        for issuer in issuers:
            if self.budget <= 0:
                return
            self.budget -= 1
            if not signature_valid(cert, issuer.public_key()):
                if _key_id_matches(cert, issuer):
                    self.bad_signature = self.bad_signature or cert
                else:  # same name, other key (e.g. a foreign CA): not this certificate's issuer
                    self.missing_issuer = self.missing_issuer or cert
                continue
            if issuer.public_bytes(_DER) in anchor_ders:
                yield [*path, issuer]
            elif len(path) < self.max_depth:
                yield from self.paths([*path, issuer], anchor_ders)



def _key_id_matches(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """False only when the authorityKeyIdentifier names another key than the issuer's (RFC 5280 §4.2.1.1)."""
    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    if not isinstance(aki, x509.AuthorityKeyIdentifier) or aki.key_identifier is None:
        return True
    ski = _ext(issuer, x509.SubjectKeyIdentifier)
    ids = {x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest}
    if isinstance(ski, x509.SubjectKeyIdentifier):
        ids.add(ski.digest)
    return aki.key_identifier in ids


def _no_path(search: _Search, leaf: x509.Certificate) -> ValidationFailure:
    if search.bad_signature is not None:
        cert = search.bad_signature
        return ValidationFailure.about(
            ReasonCode.BAD_SIGNATURE, cert,
            f"signature does not verify with the key of any '{cert.issuer.rfc4514_string()}'")
    cert = search.missing_issuer or leaf
    return ValidationFailure.about(
        ReasonCode.UNKNOWN_ISSUER, cert,
        f"issuer '{cert.issuer.rfc4514_string()}' is neither a trust anchor of this connection nor among "
        "the certificates the peer sent")


# -- per-certificate checks ----------------------------------------------------------------------------------
def _check_validity(cert: x509.Certificate, now: datetime, policy: ValidationPolicy) -> None:
    if now + policy.clock_skew < cert.not_valid_before_utc:
        start = cert.not_valid_before_utc.isoformat()
        raise _refuse(ReasonCode.NOT_YET_VALID, cert, f"not valid before {start}")
    if now - policy.clock_skew > cert.not_valid_after_utc:
        raise _refuse(ReasonCode.EXPIRED, cert, f"expired at {cert.not_valid_after_utc.isoformat()}")


def _check_key(cert: x509.Certificate, policy: ValidationPolicy) -> None:
    key = cert.public_key()
    kind = key_type(key)
    if kind not in policy.key_types:
        raise _refuse(ReasonCode.SIGNATURE_ALGORITHM_FORBIDDEN, cert,
                      f"{kind} key, allowed: {', '.join(sorted(policy.key_types))}")
    problem = key_problem(key, policy)
    if problem:
        raise _refuse(ReasonCode.KEY_TOO_SMALL, cert, problem)


def _check_critical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and ext.oid.dotted_string not in UNDERSTOOD_EXTENSIONS:
            raise _refuse(ReasonCode.UNKNOWN_CRITICAL_EXTENSION, cert,
                          f"critical extension {ext.oid.dotted_string} is not understood (RFC 5280 §4.2)")


def _check_ca(cert: x509.Certificate, *, anchor: bool) -> None:
    constraints = _ext(cert, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints):
        if not constraints.ca:
            raise _refuse(ReasonCode.NOT_A_CA, cert, "issues certificates but basicConstraints has cA=FALSE")
    elif not anchor:
        raise _refuse(ReasonCode.NOT_A_CA, cert, "issues certificates without basicConstraints (§6.1.4 (k))")
    usage = _ext(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise _refuse(ReasonCode.KEY_USAGE, cert, "CA keyUsage lacks keyCertSign (§6.1.4 (n))")


def _check_leaf_usage(cert: x509.Certificate, policy: ValidationPolicy) -> set[str]:
    usage = _ext(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not (usage.digital_signature or usage.content_commitment):
        raise _refuse(ReasonCode.KEY_USAGE, cert,
                      "keyUsage lacks digitalSignature/nonRepudiation for IKE AUTH (RFC 4945 §5.1.3.2)")
    try:
        extension = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return set()
    present = {oid.dotted_string for oid in extension.value}
    problem = eku_problem(present, critical=extension.critical, mode=policy.eku)
    if problem:
        raise _refuse(ReasonCode.EKU, cert, problem)
    return present


def _check_path(path: list[x509.Certificate], now: datetime, policy: ValidationPolicy) -> None:
    """§6.1.3/§6.1.4 over a leaf-first path ending at a trust anchor; raises _Refused."""
    anchor = path[-1]
    _check_validity(anchor, now, policy)
    _check_key(anchor, policy)
    _check_ca(anchor, anchor=True)
    max_path = policy.max_path_length
    anchor_bc = _ext(anchor, x509.BasicConstraints)
    if isinstance(anchor_bc, x509.BasicConstraints) and anchor_bc.path_length is not None:
        max_path = min(max_path, anchor_bc.path_length)  # RFC 5937: anchor constraints apply
    name_constraints: list[x509.NameConstraints] = []
    anchor_nc = _ext(anchor, x509.NameConstraints)
    if isinstance(anchor_nc, x509.NameConstraints):
        name_constraints.append(anchor_nc)
    below = list(reversed(path[:-1]))
    policies = PolicyState(count=len(below))
    issuer = anchor
    for index, cert in enumerate(below):
        is_leaf = index == len(below) - 1
        _check_validity(cert, now, policy)
        problem = algorithm_problem(cert, issuer.public_key(), policy)
        if problem:
            raise _refuse(ReasonCode.SIGNATURE_ALGORITHM_FORBIDDEN, cert, problem)
        _check_key(cert, policy)
        _check_critical(cert)
        if is_leaf or not is_self_issued(cert):
            violation = name_constraint_violation(cert, name_constraints)
            if violation:
                raise _refuse(ReasonCode.NAME_CONSTRAINTS, cert, violation)
        policies.process(cert, is_leaf=is_leaf)
        if not is_leaf:
            _check_ca(cert, anchor=False)
            if not is_self_issued(cert):
                if max_path <= 0:
                    raise _refuse(ReasonCode.PATH_LENGTH, cert,
                                  "exceeds the pathLenConstraint of a CA above it")
                max_path -= 1
            bc = _ext(cert, x509.BasicConstraints)
            if isinstance(bc, x509.BasicConstraints) and bc.path_length is not None:
                max_path = min(max_path, bc.path_length)
            nc = _ext(cert, x509.NameConstraints)
            if isinstance(nc, x509.NameConstraints):
                name_constraints.append(nc)
        issuer = cert
    leaf = path[0]
    leaf_ekus = _check_leaf_usage(leaf, policy)
    problem = policies.problem(policy.required_oids, leaf_ekus)
    if problem:
        raise _refuse(ReasonCode.POLICY, leaf, problem)


def _check_revocation(
    path: list[x509.Certificate], now: datetime, policy: ValidationPolicy, revocation: RevocationSource
) -> list[str]:
    """Revocation of every certificate below the anchor, leaf first; returns notes of unknown statuses."""
    notes: list[str] = []
    for cert, issuer in itertools.pairwise(path):
        status = revocation.status(cert, issuer, now=now)
        if status.state is RevocationState.REVOKED:
            raise _refuse(ReasonCode.REVOKED, cert, f"revoked according to {status.source}")
        if status.state is RevocationState.GOOD:
            continue
        fail = policy.revocation is RevocationMode.STRICT or (
            policy.revocation is RevocationMode.IFURI and status.uri_failed)
        if fail:
            raise _refuse(ReasonCode.REVOCATION_UNAVAILABLE, cert,
                          f"status unknown (revocation={policy.revocation.value}): {status.detail}")
        notes.append(f"revocation status of {describe(cert)} unknown, accepted under "
                     f"revocation={policy.revocation.value}: {status.detail}")
    return notes


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
    policy: ValidationPolicy,
    revocation: RevocationSource,
    identity: str | None = None,
) -> ValidationResult:
    """Validate ``leaf`` to one of ``anchors`` using ``intermediates`` (CERT payloads: any order, extras ok).

    Checks in order (docs/pki.md): path building with signatures, then per path validity, algorithms, key
    sizes, critical extensions, name constraints, CA constraints and path length, leaf keyUsage/EKU, required
    policies; then ``identity`` (if given) against the leaf; then revocation. The first path that passes
    wins; otherwise the failure of the first complete path (or why no path exists) is returned.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")
    anchor_ders = {a.public_bytes(_DER) for a in anchors}
    search = _Search(anchors, list(intermediates)[:MAX_INTERMEDIATES], max_depth=policy.max_path_length + 2)
    try:
        if leaf.public_bytes(_DER) in anchor_ders:
            candidates: Iterator[list[x509.Certificate]] = iter([[leaf]])
        else:
            candidates = search.paths([leaf], anchor_ders)
        first_failure: ValidationFailure | None = None
        for path in candidates:
            try:
                if len(path) > 1:
                    _check_path(path, now, policy)
                else:  # the peer's certificate itself is configured as trusted
                    _check_validity(leaf, now, policy)
                    _check_key(leaf, policy)
                    _check_critical(leaf)
                    _check_leaf_usage(leaf, policy)
                if identity is not None and not identity_in_certificate(identity, leaf):
                    raise _refuse(ReasonCode.NAME_MISMATCH, leaf,
                                  f"identity '{identity}' is neither in subjectAltName nor the subject DN")
                notes = _check_revocation(path, now, policy, revocation)
            except _Refused as refused:
                first_failure = first_failure or refused.failure
                continue
            return ValidationResult(path=tuple(path), notes=tuple(notes))
        return ValidationResult(failure=first_failure or _no_path(search, leaf))
    except UnsupportedAlgorithm as exc:
        return ValidationResult(failure=ValidationFailure.about(
            ReasonCode.SIGNATURE_ALGORITHM_FORBIDDEN, leaf, f"unsupported key or signature algorithm: {exc}"))
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        return ValidationResult(failure=ValidationFailure.about(
            ReasonCode.MALFORMED, leaf, f"certificate could not be parsed: {exc}"))
