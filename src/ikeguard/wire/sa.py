"""Security Association payload: proposals, transforms and transform attributes (RFC 7296 §3.3).

Unknown protocol IDs, transform types, transform IDs and attributes are kept so a received SA payload
re-encodes to the same content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from ikeguard.wire.errors import FieldError, LengthError, TruncatedError
from ikeguard.wire.iana import PayloadType, ProtocolId, TransformAttr, TransformType, lookup
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.proposal_string import ProposalSpec
from ikeguard.wire.transforms import Transform, TransformAttribute

_PROPOSAL = struct.Struct("!BBHBBBB")
_TRANSFORM = struct.Struct("!BBHBBH")
_ATTR = struct.Struct("!HH")
_LAST_PROPOSAL, _MORE_PROPOSALS = 0, 2
_LAST_TRANSFORM, _MORE_TRANSFORMS = 0, 3
_AF_TV = 0x8000

MAX_PROPOSALS = 64
"""Most proposals one SA payload may carry. RFC 7296 §3.3.1 numbers them in one octet; peers offer a handful
(strongSwan one per configured proposal). A bound keeps what a hostile SA payload costs to parse small."""
MAX_TRANSFORMS = 512
"""Most transforms in one SA payload, over all its proposals (strongSwan's ``default`` proposal has ~40)."""
MAX_ATTRIBUTES = 16
"""Most attributes one transform may carry (RFC 7296 §3.3.5 defines only Key Length)."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """Proposal substructure (§3.3.1): number, protocol, SPI (empty for IKE_SA_INIT) and transforms."""

    number: int
    protocol: ProtocolId | int
    spi: bytes
    transforms: tuple[Transform, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.number < 256 or not 0 <= int(self.protocol) < 256:
            raise ValueError("proposal number and protocol ID are one octet")
        if len(self.spi) > 255 or len(self.transforms) > 255:
            raise ValueError("too long SPI or too many transforms for one proposal")

    def to_spec(self) -> ProposalSpec:
        """The proposal's transforms grouped by type; ValueError for an unknown protocol or transform type."""
        return ProposalSpec.from_transforms(ProtocolId(self.protocol), self.transforms)

    @classmethod
    def from_spec(cls, number: int, spec: ProposalSpec, spi: bytes = b"") -> Proposal:
        """A proposal substructure offering ``spec`` (transforms in wire order)."""
        return cls(number, spec.protocol, spi, spec.transforms())


@dataclass(frozen=True, slots=True)
class SaPayload(Payload):
    """SA payload (§3.3): one or more proposals in preference order."""

    payload_type: ClassVar[int] = PayloadType.SA
    proposals: tuple[Proposal, ...]

    def __post_init__(self) -> None:
        if not self.proposals:
            raise ValueError("an SA payload has at least one proposal (RFC 7296 §3.3)")

    def encode_body(self) -> bytes:
        """Proposal substructures, the last one marked 0 (§3.3.1)."""
        out = bytearray()
        for index, proposal in enumerate(self.proposals):
            listed = proposal.transforms
            transforms = (_memo_transforms(listed) if len(listed) <= _MEMO_TRANSFORMS
                          else _encode_transforms(listed))
            length = _PROPOSAL.size + len(proposal.spi) + len(transforms)
            if length > 0xFFFF:
                raise ValueError("proposal longer than 65535 octets")
            marker = _LAST_PROPOSAL if index == len(self.proposals) - 1 else _MORE_PROPOSALS
            out += _PROPOSAL.pack(
                marker,
                0,
                length,
                proposal.number,
                int(proposal.protocol),
                len(proposal.spi),
                len(proposal.transforms),
            )
            out += proposal.spi + transforms
        return bytes(out)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> SaPayload:
        """Parse proposals; lengths, counts and last-substructure markers must agree (§3.3.1, §3.3.2), and
        at most :data:`MAX_PROPOSALS` proposals and :data:`MAX_TRANSFORMS` transforms in all."""
        proposals: list[Proposal] = []
        transform_count = 0
        pos = 0
        while pos < len(body):
            at = offset + pos
            if len(proposals) == MAX_PROPOSALS:
                raise FieldError(f"more than {MAX_PROPOSALS} proposals", at, PayloadType.SA)
            if len(body) - pos < _PROPOSAL.size:
                raise TruncatedError("proposal substructure header cut short", at, PayloadType.SA)
            marker, _res, length, number, protocol, spi_size, count = _PROPOSAL.unpack_from(body, pos)
            if length < _PROPOSAL.size + spi_size:
                raise LengthError(f"proposal length {length} too small", at + 2, PayloadType.SA)
            if pos + length > len(body):
                raise LengthError(f"proposal length {length} exceeds the SA payload", at + 2, PayloadType.SA)
            end = pos + length
            is_last = end == len(body)
            if marker not in (_LAST_PROPOSAL, _MORE_PROPOSALS) or (marker == _LAST_PROPOSAL) != is_last:
                raise FieldError(
                    f"proposal 'last' field {marker} disagrees with its position", at, PayloadType.SA
                )
            spi_start = pos + _PROPOSAL.size
            spi = body[spi_start : spi_start + spi_size]
            transform_count += count
            if transform_count > MAX_TRANSFORMS:
                raise FieldError(f"more than {MAX_TRANSFORMS} transforms", at + 7, PayloadType.SA)
            transforms = _transforms(
                body[spi_start + spi_size : end], offset + spi_start + spi_size, count
            )
            if len(transforms) != count:
                holds = "more" if len(transforms) > count else str(len(transforms))
                raise FieldError(
                    f"proposal announces {count} transforms but holds {holds}",
                    at + 7,
                    PayloadType.SA,
                )
            proposals.append(Proposal(number, lookup(ProtocolId, protocol), spi, tuple(transforms)))
            pos = end
        if not proposals:
            raise FieldError("SA payload without proposals", offset, PayloadType.SA)
        return cls(tuple(proposals), critical=critical)


def _encode_transform(t: Transform, *, last: bool) -> bytes:
    attrs = bytearray()
    if t.key_length is not None:
        attrs += _ATTR.pack(_AF_TV | TransformAttr.KEY_LENGTH, t.key_length)
    for a in t.attributes:
        if isinstance(a.value, int):
            attrs += _ATTR.pack(_AF_TV | a.type, a.value)
        else:
            attrs += _ATTR.pack(a.type, len(a.value)) + a.value
    length = _TRANSFORM.size + len(attrs)
    marker = _LAST_TRANSFORM if last else _MORE_TRANSFORMS
    return _TRANSFORM.pack(marker, 0, length, int(t.type), 0, t.id) + attrs


def _encode_transforms(transforms: tuple[Transform, ...]) -> bytes:
    return b"".join(_encode_transform(t, last=i == len(transforms) - 1) for i, t in enumerate(transforms))


_MEMO_TRANSFORMS = 16
_memo_transforms = lru_cache(maxsize=128)(_encode_transforms)
"""Our proposals' transform lists are encoded again for every SA (the chosen one, with its fresh SPI, in each
response): the octets of lists of up to :data:`_MEMO_TRANSFORMS` immutable Transforms are memoised."""

_MEMO_ENTRIES, _MEMO_OCTETS = 256, 1024
_transforms_memo: dict[bytes, tuple[Transform, ...]] = {}


def _transforms(data: bytes, offset: int, limit: int) -> tuple[Transform, ...]:
    """A proposal's transforms: the octets after the SPI repeat for every SA a peer offers the same suites
    in, so a small memo of well-formed lists (immutable Transforms) skips re-parsing them; a malformed list is
    never stored and raises with its own offsets every time. Decoding stops after ``limit`` + 1 transforms
    (the caller refuses any count but ``limit``)."""
    found = _transforms_memo.get(data)
    if found is not None:
        return found
    parsed = tuple(_decode_transforms(data, offset, limit + 1))
    if len(data) <= _MEMO_OCTETS and len(parsed) <= limit:  # a list cut off at the limit is never stored
        if len(_transforms_memo) >= _MEMO_ENTRIES:  # bounded (a peer can vary its offers): oldest out
            _transforms_memo.pop(next(iter(_transforms_memo)), None)
        _transforms_memo[bytes(data)] = parsed
    return parsed


def _decode_transforms(data: bytes, offset: int, limit: int) -> list[Transform]:
    out: list[Transform] = []
    pos = 0
    while pos < len(data) and len(out) < limit:
        at = offset + pos
        if len(data) - pos < _TRANSFORM.size:
            raise TruncatedError("transform substructure header cut short", at, PayloadType.SA)
        marker, _r1, length, ttype, _r2, tid = _TRANSFORM.unpack_from(data, pos)
        if length < _TRANSFORM.size or pos + length > len(data):
            raise LengthError(f"transform length {length} does not fit its proposal", at + 2, PayloadType.SA)
        end = pos + length
        if marker not in (_LAST_TRANSFORM, _MORE_TRANSFORMS) or (marker == _LAST_TRANSFORM) != (
            end == len(data)
        ):
            raise FieldError(
                f"transform 'last' field {marker} disagrees with its position", at, PayloadType.SA
            )
        key_length, attributes = _decode_attributes(data[pos + _TRANSFORM.size : end], at + _TRANSFORM.size)
        out.append(Transform(lookup(TransformType, ttype), tid, key_length, attributes))
        pos = end
    return out


def _decode_attributes(data: bytes, offset: int) -> tuple[int | None, tuple[TransformAttribute, ...]]:
    key_length: int | None = None
    attrs: list[TransformAttribute] = []
    pos = 0
    while pos < len(data):
        if len(attrs) == MAX_ATTRIBUTES:
            raise FieldError(f"more than {MAX_ATTRIBUTES} transform attributes", offset + pos, PayloadType.SA)
        if len(data) - pos < _ATTR.size:
            raise TruncatedError("transform attribute cut short", offset + pos, PayloadType.SA)
        type_field, value = _ATTR.unpack_from(data, pos)
        attr_type = type_field & 0x7FFF
        if type_field & _AF_TV:
            if attr_type == TransformAttr.KEY_LENGTH and key_length is None:
                key_length = value
            else:
                attrs.append(TransformAttribute(attr_type, value))
            pos += _ATTR.size
        else:
            end = pos + _ATTR.size + value
            if end > len(data):
                raise LengthError(
                    f"attribute length {value} exceeds its transform", offset + pos + 2, PayloadType.SA
                )
            attrs.append(TransformAttribute(attr_type, data[pos + _ATTR.size : end]))
            pos = end
    return key_length, tuple(attrs)
