"""IKE identities as configured (strongSwan syntax) and matching of authenticated identities against them.

Syntax (docs/reference.md "Configuration file"): FQDN (``gw.example.net`` or ``@gw.example.net``), RFC 822
(``user@example.net``), IPv4/IPv6, DN (``CN=gw, O=Example``), key id (``@#`` + hex), ``%any``.
``*`` stands for exactly one DNS label or one RDN value. Written by hand: strongSwan's rules, our code.
Precedence for connection selection: exact > pattern > ``%any`` (RFC 7296 §2.15 leaves the policy local).

Wildcards exist on the configured side only (as in strongSwan's ``identification_t``): an identity a peer
sends (RFC 7296 §3.5) is parsed with ``parse_peer_identity`` into a *literal* identity in which ``*`` and
``%any`` are plain text. A literal identity is never a pattern: a configured ``*`` matches one label or
value that is itself free of wildcard characters, so a peer that sends ``*.example.net`` (or ``%any``) is
matched by ``%any`` only, never by the pattern ``*.example.net``. ``Identity.matches`` is the one place
this rule lives; exact configured ids match by equal parts.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum, IntEnum
from functools import lru_cache

from ikeguard.wire.iana import IdType

_LABEL_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_ATTR_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*|[0-2](\.\d+)+)$")
_HEX_RE = re.compile(r"^([0-9A-Fa-f]{2})+$")

IDENTITY_EXPECTED = (
    "expected an identity: FQDN (gw.example.net or @gw.example.net), RFC 822 (user@example.net), "
    "IPv4/IPv6 address, DN (CN=gw, O=Example), key id (@#0a1b...) or %any"
)


class IdentityKind(Enum):
    """What an identity names; maps to the RFC 7296 §3.5 ID type where one exists."""

    ANY = "any"
    FQDN = "fqdn"
    RFC822 = "rfc822"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    DN = "dn"
    KEY_ID = "keyid"

    @property
    def id_type(self) -> IdType | None:
        """RFC 7296 §3.5 ID payload type (None for %any)."""
        return {
            IdentityKind.FQDN: IdType.FQDN,
            IdentityKind.RFC822: IdType.RFC822_ADDR,
            IdentityKind.IPV4: IdType.IPV4_ADDR,
            IdentityKind.IPV6: IdType.IPV6_ADDR,
            IdentityKind.DN: IdType.DER_ASN1_DN,
            IdentityKind.KEY_ID: IdType.KEY_ID,
        }.get(self)


class Precedence(IntEnum):
    """Connection selection precedence of a configured remote identity: higher wins."""

    ANY = 1
    PATTERN = 2
    EXACT = 3


@dataclass(frozen=True)
class Identity:
    """A parsed identity; ``parts`` are normalized labels / (type, value) RDNs / bytes for matching."""

    kind: IdentityKind
    text: str
    parts: tuple[str, ...]
    literal: bool = False  # received from a peer: ``*`` and ``%any`` are text, never wildcards

    @property
    def is_pattern(self) -> bool:
        """True when the identity contains ``*`` (matches several identities); never for a literal one."""
        return not self.literal and self.kind is not IdentityKind.ANY and "*" in self.parts

    @property
    def precedence(self) -> Precedence:
        """Exact > pattern > %any."""
        if self.kind is IdentityKind.ANY:
            return Precedence.ANY
        return Precedence.PATTERN if self.is_pattern else Precedence.EXACT

    def matches(self, other: Identity) -> bool:
        """Whether the concrete identity ``other`` is matched by this (possibly pattern) identity.

        ``other`` is a peer's identity (``parse_peer_identity``) or an exact configured one; a pattern or
        ``%any`` as ``other`` is matched by nothing but ``%any`` (for config checks). Wildcards of ``self``
        never match a part of ``other`` that holds a wildcard character itself (strongSwan: the wildcard is
        on the configured side only).
        """
        if self.kind is IdentityKind.ANY:
            return other.kind is not IdentityKind.ANY
        if other.kind is not self.kind or other.is_pattern:
            return False
        return _parts_match(self, other, pattern_only_left=True)

    def overlaps(self, other: Identity) -> bool:
        """Whether some concrete identity is matched by both (used to find ambiguous connections)."""
        if IdentityKind.ANY in (self.kind, other.kind):
            return True
        if self.kind is not other.kind:
            return False
        return _parts_match(self, other, pattern_only_left=False)

    def __str__(self) -> str:
        return self.text


def _wildcard_takes(part: str, *, dns: bool) -> bool:
    """Whether a configured ``*`` matches this part of a peer's identity: one wildcard-free DNS label
    (hostname syntax) or one RDN value / RFC 822 local part without ``*``."""
    if dns:
        return _LABEL_RE.match(part) is not None
    return "*" not in part


def _label_match(left: str, right: str, *, left_wild: bool, right_wild: bool, dns: bool) -> bool:
    if right_wild and right == "*":
        return True  # two configured patterns (overlap check): some part fits both
    if left_wild and left == "*":
        return _wildcard_takes(right, dns=dns)
    return left == right


def _parts_match(pattern: Identity, other: Identity, *, pattern_only_left: bool) -> bool:
    left_wild = not pattern.literal
    right_wild = not pattern_only_left and not other.literal
    parts = other.parts
    if pattern.kind is IdentityKind.DN:
        # parts alternate type, value; a DN may be written in either RDN order (config vs. encoding order)
        left_rdns = _pairs(pattern.parts)
        right_rdns = _pairs(parts)
        for candidate in (right_rdns, tuple(reversed(right_rdns))):
            if len(candidate) == len(left_rdns) and all(
                lt == rt and _label_match(lv, rv, left_wild=left_wild, right_wild=right_wild, dns=False)
                for (lt, lv), (rt, rv) in zip(left_rdns, candidate, strict=True)
            ):
                return True
        return False
    if len(pattern.parts) != len(parts):
        return False
    for index, (a, b) in enumerate(zip(pattern.parts, parts, strict=True)):
        dns = not (pattern.kind is IdentityKind.RFC822 and index == 0)  # the local part is not a label
        if not _label_match(a, b, left_wild=left_wild, right_wild=right_wild, dns=dns):
            return False
    return True


def _pairs(parts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((parts[i], parts[i + 1]) for i in range(0, len(parts), 2))


def _fqdn_labels(text: str, what: str, literal: bool = False) -> tuple[str, ...]:
    labels = text.rstrip(".").lower().split(".")
    if literal:  # a peer's name: any printable text per label, '*' and '%' included, matched as text
        if any(not label or not all("!" <= c <= "~" for c in label) for label in labels):
            raise ValueError(f"{what} name {text!r} has an empty label or characters outside printable ASCII")
        if len(text) > 253:
            raise ValueError(f"{what} longer than 253 characters")
        return tuple(labels)
    for label in labels:
        if label == "*":
            continue
        if "*" in label:
            raise ValueError(f"'*' must stand for a whole {what} label (e.g. *.merchants.example.net)")
        if not _LABEL_RE.match(label):
            raise ValueError(f"invalid {what} label {label!r}; " + IDENTITY_EXPECTED)
    if len(text) > 253:
        raise ValueError(f"{what} longer than 253 characters")
    return tuple(labels)


def _split_dn(text: str) -> list[str]:
    parts: list[str] = []
    current = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_dn(text: str, literal: bool = False) -> tuple[str, ...]:
    parts: list[str] = []
    for rdn in _split_dn(text):
        attr, sep, value = rdn.partition("=")
        attr, value = attr.strip(), value.strip()
        if not sep or not attr or not value:
            raise ValueError(f"invalid RDN {rdn.strip()!r}: expected TYPE=value, e.g. CN=gw, O=Example")
        if not _ATTR_RE.match(attr):
            raise ValueError(f"invalid RDN type {attr!r}")
        if literal:  # a peer's DN: '*' is a character of the value
            parts.extend((attr.upper(), " ".join(value.split()).casefold()))
            continue
        if "*" in value and value != "*":
            raise ValueError("'*' must stand for a whole RDN value (e.g. CN=*, O=Merchants)")
        parts.extend((attr.upper(), " ".join(value.split()).casefold() if value != "*" else "*"))
    return tuple(parts)


@lru_cache(maxsize=65536)
def parse_identity(text: str) -> Identity:
    """Parse a configured identity (patterns and ``%any`` allowed); raise ``ValueError`` naming what was
    expected."""
    return _parse(text, literal=False)


@lru_cache(maxsize=65536)
def parse_peer_identity(text: str) -> Identity:
    """Parse the text form of an identity a peer sent (RFC 7296 §3.5): a *literal* identity.

    Same syntax as ``parse_identity`` for the kind, but ``*`` and ``%any`` are plain text: the result is
    never a pattern and never ``%any`` (``%any`` reads as the FQDN "%any"), so it is matched only by
    configured identities (``Identity.matches``) and can never stand for several peers. Raises
    ``ValueError`` for text that is no identity at all (empty, control characters, spaces in a name).
    """
    return _parse(text, literal=True)


def _parse(text: str, *, literal: bool) -> Identity:
    raw = text.strip()
    if not raw:
        raise ValueError("empty identity; " + IDENTITY_EXPECTED)
    if raw == "%any" and not literal:
        return Identity(IdentityKind.ANY, raw, ())
    if raw.startswith("@#"):
        hex_part = raw[2:].replace(":", "")
        if not _HEX_RE.match(hex_part):
            raise ValueError("a key id is @# followed by an even number of hex digits, e.g. @#0a1b2c")
        return Identity(IdentityKind.KEY_ID, raw, (hex_part.lower(),), literal)
    if raw.startswith("@"):
        return Identity(IdentityKind.FQDN, raw, _fqdn_labels(raw[1:], "DNS", literal), literal)
    if "=" in raw:
        return Identity(IdentityKind.DN, raw, _parse_dn(raw, literal), literal)
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        pass
    else:
        kind = IdentityKind.IPV4 if address.version == 4 else IdentityKind.IPV6
        return Identity(kind, raw, (address.compressed,), literal)
    if "@" in raw:
        local, _, domain = raw.rpartition("@")
        if not local or "@" in local or (("*" in local) and local != "*" and not literal):
            raise ValueError("an RFC 822 identity is local@domain ('*' only as the whole local part)")
        return Identity(IdentityKind.RFC822, raw, (local.lower(), *_fqdn_labels(domain, "domain", literal)),
                        literal)
    if " " in raw or ("%" in raw and not literal):
        raise ValueError(IDENTITY_EXPECTED)
    return Identity(IdentityKind.FQDN, raw, _fqdn_labels(raw, "DNS", literal), literal)


def validate_identity(text: str) -> str:
    """Pydantic hook: keep the text, fail with the parser's message."""
    parse_identity(text)
    return text
