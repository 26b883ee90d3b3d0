"""Name constraints (RFC 5280 §4.2.1.10, §6.1.4 (g)) and certificate policies (§6.1.3 (d)-(f), simplified).

Written by hand over ``cryptography``'s extension parsers. Name forms checked: dNSName, rfc822Name, iPAddress,
directoryName; a constraint on another form rejects a certificate that carries a name of that form.
Policies: the set of valid policy OIDs is intersected down the path (anyPolicy honoured, inhibitAnyPolicy and
requireExplicitPolicy counted); policy mappings are not supported and fail the check when policy matters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import CertificatePoliciesOID, ExtensionOID

ANY_POLICY = CertificatePoliciesOID.ANY_POLICY.dotted_string


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def is_self_issued(cert: x509.Certificate) -> bool:
    """Subject equals issuer (RFC 5280 §6.1: such CA certificates do not count toward path length)."""
    return cert.subject == cert.issuer


def names_of(cert: x509.Certificate) -> list[x509.GeneralName]:
    """Subject DN (when not empty) and every subjectAltName entry."""
    names: list[x509.GeneralName] = []
    if len(cert.subject) > 0:
        names.append(x509.DirectoryName(cert.subject))
    san = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if isinstance(san, x509.SubjectAlternativeName):
        names.extend(san)
    return names


def _dns_within(name: str, base: str) -> bool:
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if base.startswith("."):
        return name.endswith(base)
    return not base or name == base or name.endswith("." + base)


def _mail_within(mail: str, base: str) -> bool:
    local, _, domain = mail.rpartition("@")
    if "@" in base:
        b_local, _, b_domain = base.rpartition("@")
        return local == b_local and domain.lower() == b_domain.lower()
    if base.startswith("."):
        return domain.lower().endswith(base.lower())
    return domain.lower() == base.lower()


def _within(name: x509.GeneralName, base: x509.GeneralName) -> bool | None:
    """Whether ``name`` lies in subtree ``base``; None when the two are of different forms."""
    if type(name) is not type(base):
        return None
    if isinstance(name, x509.DNSName) and isinstance(base, x509.DNSName):
        return _dns_within(name.value, base.value)
    if isinstance(name, x509.RFC822Name) and isinstance(base, x509.RFC822Name):
        return _mail_within(name.value, base.value)
    if isinstance(name, x509.IPAddress) and isinstance(base, x509.IPAddress):
        address = name.value
        network = base.value
        if isinstance(address, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return False
        if isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return address.version == network.version and address in network
        return False
    if isinstance(name, x509.DirectoryName) and isinstance(base, x509.DirectoryName):
        rdns, base_rdns = list(name.value.rdns), list(base.value.rdns)
        return rdns[: len(base_rdns)] == base_rdns
    return False


_SUPPORTED = (x509.DNSName, x509.RFC822Name, x509.IPAddress, x509.DirectoryName)


def name_constraint_violation(
    cert: x509.Certificate, constraints: Sequence[x509.NameConstraints]
) -> str | None:
    """Why ``cert``'s names break one of the accumulated name constraints, or None."""
    names = names_of(cert)
    for nc in constraints:
        permitted = list(nc.permitted_subtrees or [])
        excluded = list(nc.excluded_subtrees or [])
        for name in names:
            same_form = [b for b in permitted + excluded if type(b) is type(name)]
            if same_form and not isinstance(name, _SUPPORTED):
                return f"name constraint on unsupported name form {type(name).__name__}"
            if any(_within(name, b) for b in excluded):
                return f"name {name.value!s} is in an excluded subtree"
            allowed = [b for b in permitted if type(b) is type(name)]
            if allowed and not any(_within(name, b) for b in allowed):
                return f"name {name.value!s} is outside the permitted subtrees"
    return None


@dataclass
class PolicyState:
    """RFC 5280 §6.1.2 policy variables without the tree: the valid OID set and the counters."""

    count: int
    valid: set[str] = field(default_factory=lambda: {ANY_POLICY})
    explicit_policy: int = 0
    inhibit_any: int = 0
    mapped: bool = False

    def __post_init__(self) -> None:
        self.explicit_policy = self.count + 1
        self.inhibit_any = self.count + 1

    def process(self, cert: x509.Certificate, *, is_leaf: bool) -> None:
        """§6.1.3 (d)-(f) and §6.1.4 (h)-(j) for one certificate (top-down, anchor excluded)."""
        policies = _ext(cert, ExtensionOID.CERTIFICATE_POLICIES)
        if not isinstance(policies, x509.CertificatePolicies):
            self.valid = set()
        else:
            oids = {p.policy_identifier.dotted_string for p in policies}
            any_allowed = self.inhibit_any > 0 or (is_self_issued(cert) and not is_leaf)
            if ANY_POLICY in oids and not any_allowed:
                oids.discard(ANY_POLICY)
            if ANY_POLICY in self.valid:
                self.valid = oids
            elif ANY_POLICY not in oids:
                self.valid &= oids
        if _ext(cert, ExtensionOID.POLICY_MAPPINGS) is not None and not is_leaf:
            self.mapped = True
        if is_leaf or not is_self_issued(cert):  # §6.1.4 (h), §6.1.5 (a)
            self.explicit_policy = max(self.explicit_policy - 1, 0)
        if not is_leaf and not is_self_issued(cert):
            self.inhibit_any = max(self.inhibit_any - 1, 0)
        constraints = _ext(cert, ExtensionOID.POLICY_CONSTRAINTS)
        if isinstance(constraints, x509.PolicyConstraints):
            required = constraints.require_explicit_policy
            if required is not None:
                self.explicit_policy = min(self.explicit_policy, required)
        inhibit = _ext(cert, ExtensionOID.INHIBIT_ANY_POLICY)
        if isinstance(inhibit, x509.InhibitAnyPolicy) and not is_leaf:
            self.inhibit_any = min(self.inhibit_any, inhibit.skip_certs)

    def problem(self, required: Sequence[str], leaf_ekus: set[str]) -> str | None:
        """Why the required OIDs (EKU of the leaf, or valid policy) are not met, or None."""
        needs_policy = [oid for oid in required if oid not in leaf_ekus]
        if (needs_policy or self.explicit_policy == 0) and self.mapped:
            return "policy mappings are not supported"
        for oid in needs_policy:
            if oid not in self.valid and ANY_POLICY not in self.valid:
                return f"required {oid} is neither an EKU of the leaf nor a policy valid for the path"
        if self.explicit_policy == 0 and not self.valid:
            return "the path requires an explicit certificate policy and has none valid"
        return None
