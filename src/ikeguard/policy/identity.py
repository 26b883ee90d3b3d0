"""IKE identities as configured (strongSwan syntax) and matching of authenticated identities against them.

Syntax (INTERFACE.md "Identities"): FQDN (``gw.example.net`` or ``@gw.example.net``), RFC 822
(``user@example.net``), IPv4/IPv6, DN (``CN=gw, O=Example``), key id (``@#`` + hex), ``%any``.
``*`` stands for exactly one DNS label or one RDN value. Written by hand: strongSwan's rules, our code.
Precedence for connection selection: exact > pattern > ``%any`` (RFC 7296 §2.15 leaves the policy local).
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

    @property
    def is_pattern(self) -> bool:
        """True when the identity contains ``*`` (matches several identities)."""
        return self.kind is not IdentityKind.ANY and "*" in self.parts

    @property
    def precedence(self) -> Precedence:
        """Exact > pattern > %any."""
        if self.kind is IdentityKind.ANY:
            return Precedence.ANY
        return Precedence.PATTERN if self.is_pattern else Precedence.EXACT

    def matches(self, other: Identity) -> bool:
        """Whether the concrete identity ``other`` is matched by this (possibly pattern) identity."""
        if self.kind is IdentityKind.ANY:
            return other.kind is not IdentityKind.ANY
        if other.kind is not self.kind or other.is_pattern:
            return False
        return _parts_match(self, other.parts, pattern_only_left=True)

    def overlaps(self, other: Identity) -> bool:
        """Whether some concrete identity is matched by both (used to find ambiguous connections)."""
        if IdentityKind.ANY in (self.kind, other.kind):
            return True
        if self.kind is not other.kind:
            return False
        return _parts_match(self, other.parts, pattern_only_left=False)

    def __str__(self) -> str:
        return self.text


def _label_match(left: str, right: str, *, pattern_only_left: bool) -> bool:
    if left == "*":
        return True
    if right == "*" and not pattern_only_left:
        return True
    return left == right


def _seq_match(left: tuple[str, ...], right: tuple[str, ...], *, pattern_only_left: bool) -> bool:
    return len(left) == len(right) and all(
        _label_match(a, b, pattern_only_left=pattern_only_left) for a, b in zip(left, right, strict=True)
    )


def _parts_match(pattern: Identity, parts: tuple[str, ...], *, pattern_only_left: bool) -> bool:
    if pattern.kind is IdentityKind.DN:
        # parts alternate type, value; a DN may be written in either RDN order (config vs. encoding order)
        left_rdns = _pairs(pattern.parts)
        right_rdns = _pairs(parts)
        for candidate in (right_rdns, tuple(reversed(right_rdns))):
            if len(candidate) == len(left_rdns) and all(
                lt == rt and _label_match(lv, rv, pattern_only_left=pattern_only_left)
                for (lt, lv), (rt, rv) in zip(left_rdns, candidate, strict=True)
            ):
                return True
        return False
    return _seq_match(pattern.parts, parts, pattern_only_left=pattern_only_left)


def _pairs(parts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((parts[i], parts[i + 1]) for i in range(0, len(parts), 2))


def _fqdn_labels(text: str, what: str) -> tuple[str, ...]:
    labels = text.rstrip(".").lower().split(".")
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


def _parse_dn(text: str) -> tuple[str, ...]:
    parts: list[str] = []
    for rdn in _split_dn(text):
        attr, sep, value = rdn.partition("=")
        attr, value = attr.strip(), value.strip()
        if not sep or not attr or not value:
            raise ValueError(f"invalid RDN {rdn.strip()!r}: expected TYPE=value, e.g. CN=gw, O=Example")
        if not _ATTR_RE.match(attr):
            raise ValueError(f"invalid RDN type {attr!r}")
        if "*" in value and value != "*":
            raise ValueError("'*' must stand for a whole RDN value (e.g. CN=*, O=Merchants)")
        parts.extend((attr.upper(), " ".join(value.split()).casefold() if value != "*" else "*"))
    return tuple(parts)


@lru_cache(maxsize=65536)
def parse_identity(text: str) -> Identity:
    """Parse a configured identity; raise ``ValueError`` naming what was expected."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty identity; " + IDENTITY_EXPECTED)
    if raw == "%any":
        return Identity(IdentityKind.ANY, raw, ())
    if raw.startswith("@#"):
        hex_part = raw[2:].replace(":", "")
        if not _HEX_RE.match(hex_part):
            raise ValueError("a key id is @# followed by an even number of hex digits, e.g. @#0a1b2c")
        return Identity(IdentityKind.KEY_ID, raw, (hex_part.lower(),))
    if raw.startswith("@"):
        return Identity(IdentityKind.FQDN, raw, _fqdn_labels(raw[1:], "DNS"))
    if "=" in raw:
        return Identity(IdentityKind.DN, raw, _parse_dn(raw))
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        pass
    else:
        kind = IdentityKind.IPV4 if address.version == 4 else IdentityKind.IPV6
        return Identity(kind, raw, (address.compressed,))
    if "@" in raw:
        local, _, domain = raw.rpartition("@")
        if not local or "@" in local or (("*" in local) and local != "*"):
            raise ValueError("an RFC 822 identity is local@domain ('*' only as the whole local part)")
        return Identity(IdentityKind.RFC822, raw, (local.lower(), *_fqdn_labels(domain, "domain")))
    if "%" in raw or " " in raw:
        raise ValueError(IDENTITY_EXPECTED)
    return Identity(IdentityKind.FQDN, raw, _fqdn_labels(raw, "DNS"))


def validate_identity(text: str) -> str:
    """Pydantic hook: keep the text, fail with the parser's message."""
    parse_identity(text)
    return text
