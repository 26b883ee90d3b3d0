"""The vici wire format (strongSwan's Versatile IKE Control Interface), both directions, with hard bounds.

Written by hand: the ``vici`` package on PyPI is a client (it sends requests and parses responses; it has no
server side and its parser trusts its peer: no limit on nesting, element count or list size), and the format
is small. The format is strongSwan's ``libcharon/plugins/vici/README.md`` (read, not copied):

* transport: every segment is a 32-bit big-endian length (of the data only) followed by the data; charon
  limits a segment to 512 KiB (``MAX_SEGMENT``);
* packet: the first byte is the type (``PacketType``); named types (CMD_REQUEST, EVENT_REGISTER,
  EVENT_UNREGISTER, EVENT) carry an 8-bit length and an ASCII name next; the rest is a message;
* message: a sequence of elements, SECTION_START (named), SECTION_END, KEY_VALUE (named, 16-bit length value),
  LIST_START (named), LIST_ITEM (16-bit length value), LIST_END. Sections nest and must balance; lists do not
  nest and hold only items; key names are unique within a section.

A decoded message is a ``dict``: sections are dicts, key/values ``bytes``, lists ``list[bytes]`` (values are
blobs; charon's are strings). Hostile input costs bounded work: one pass over at most ``MAX_SEGMENT`` octets,
at most ``MAX_DEPTH`` nested sections and ``MAX_ELEMENTS`` elements; anything malformed raises
``ViciDecodeError`` (a ``ValueError``) naming the problem, never the content.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Union

MAX_SEGMENT = 512 * 1024  # charon's VICI_MESSAGE_SIZE_MAX: the largest segment either side accepts
MAX_DEPTH = 32  # nested sections (charon's own messages use at most 5: list-sa child-rekey old/new)
MAX_ELEMENTS = 20_000  # elements of one message (a list-sa of one IKE SA with 100 Child SAs is ~4,000)

Value = Union[bytes, list[bytes], "Section"]
Section = dict[str, Value]


class PacketType(IntEnum):
    """vici packet types (README "Packet layer")."""

    CMD_REQUEST = 0
    CMD_RESPONSE = 1
    CMD_UNKNOWN = 2
    EVENT_REGISTER = 3
    EVENT_UNREGISTER = 4
    EVENT_CONFIRM = 5
    EVENT_UNKNOWN = 6
    EVENT = 7


NAMED = frozenset({PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER,
                   PacketType.EVENT})


class Element(IntEnum):
    """Message element types (README "Message format")."""

    SECTION_START = 1
    SECTION_END = 2
    KEY_VALUE = 3
    LIST_START = 4
    LIST_ITEM = 5
    LIST_END = 6


class ViciDecodeError(ValueError):
    """A segment, packet or message that is not valid vici (the text names the problem only)."""


@dataclass(frozen=True)
class Packet:
    """One decoded packet: its type, its name (named types) and its message."""

    type: PacketType
    name: str = ""
    message: Section = field(default_factory=dict)


# -- decoding ------------------------------------------------------------------------------------------------
def _name(data: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(data):
        raise ViciDecodeError("truncated: name length missing")
    length = data[pos]
    end = pos + 1 + length
    if end > len(data):
        raise ViciDecodeError("truncated: name shorter than its length")
    raw = data[pos + 1:end]
    if not raw:
        raise ViciDecodeError("empty name")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ViciDecodeError("name is not ASCII") from None
    if not text.isprintable():
        raise ViciDecodeError("name has control characters")
    return text, end


def _blob(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise ViciDecodeError("truncated: value length missing")
    (length,) = struct.unpack_from("!H", data, pos)
    end = pos + 2 + length
    if end > len(data):
        raise ViciDecodeError("truncated: value shorter than its length")
    return data[pos + 2:end], end


def decode_message(data: bytes, *, max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS) -> Section:
    """The message tree of ``data`` (a whole message); ViciDecodeError when it is not well formed."""
    if len(data) > MAX_SEGMENT:
        raise ViciDecodeError("message larger than 512 KiB")
    root: Section = {}
    stack: list[Section] = [root]
    current_list: list[bytes] | None = None
    pos = 0
    elements = 0
    while pos < len(data):
        elements += 1
        if elements > max_elements:
            raise ViciDecodeError(f"more than {max_elements} elements")
        kind = data[pos]
        pos += 1
        if current_list is not None:
            if kind == Element.LIST_ITEM:
                value, pos = _blob(data, pos)
                current_list.append(value)
            elif kind == Element.LIST_END:
                current_list = None
            else:
                raise ViciDecodeError("only list items may appear in a list")
            continue
        section = stack[-1]
        if kind == Element.SECTION_START:
            name, pos = _name(data, pos)
            if name in section:
                raise ViciDecodeError("duplicate name in a section")
            if len(stack) > max_depth:
                raise ViciDecodeError(f"sections nested deeper than {max_depth}")
            child: Section = {}
            section[name] = child
            stack.append(child)
        elif kind == Element.SECTION_END:
            if len(stack) == 1:
                raise ViciDecodeError("section end without a section")
            stack.pop()
        elif kind == Element.KEY_VALUE:
            name, pos = _name(data, pos)
            if name in section:
                raise ViciDecodeError("duplicate name in a section")
            section[name], pos = _blob(data, pos)
        elif kind == Element.LIST_START:
            name, pos = _name(data, pos)
            if name in section:
                raise ViciDecodeError("duplicate name in a section")
            current_list = []
            section[name] = current_list
        elif kind in (Element.LIST_ITEM, Element.LIST_END):
            raise ViciDecodeError("list element outside a list")
        else:
            raise ViciDecodeError(f"unknown element type {kind}")
    if current_list is not None:
        raise ViciDecodeError("truncated: list not closed")
    if len(stack) != 1:
        raise ViciDecodeError("truncated: section not closed")
    return root


def decode_packet(data: bytes) -> Packet:
    """One packet (a segment's data without the length header)."""
    if not data:
        raise ViciDecodeError("empty packet")
    if len(data) > MAX_SEGMENT:
        raise ViciDecodeError("packet larger than 512 KiB")
    try:
        ptype = PacketType(data[0])
    except ValueError:
        raise ViciDecodeError(f"unknown packet type {data[0]}") from None
    pos = 1
    name = ""
    if ptype in NAMED:
        name, pos = _name(data, pos)
    return Packet(ptype, name, decode_message(data[pos:]))


def segment_length(header: bytes) -> int:
    """The data length a 4-octet segment header announces; ViciDecodeError when it is 0 or over the limit."""
    if len(header) != 4:
        raise ViciDecodeError("truncated segment header")
    length = int.from_bytes(header, "big")
    if length == 0:
        raise ViciDecodeError("empty segment")
    if length > MAX_SEGMENT:
        raise ViciDecodeError("segment larger than 512 KiB")
    return length


# -- encoding ------------------------------------------------------------------------------------------------
Encodable = Mapping[str, object]


def _encode_name(kind: int, name: str) -> bytes:
    raw = name.encode("ascii")
    if not 0 < len(raw) < 256:
        raise ValueError(f"vici name must be 1-255 octets: {name[:40]!r}")
    return bytes((kind, len(raw))) + raw


def _encode_value(value: object) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, bool):
        raw = b"yes" if value else b"no"
    else:
        raw = str(value).encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("vici value longer than 65535 octets")
    return struct.pack("!H", len(raw)) + raw


def encode_message(message: Encodable) -> bytes:
    """Elements of ``message``: dicts become sections, lists/tuples lists, everything else a key/value
    (``bool`` as yes/no, numbers and strings as their text, ``None`` skipped)."""
    out = bytearray()

    def section(items: Encodable) -> None:
        for key, value in items.items():
            if value is None:
                continue
            if isinstance(value, Mapping):
                out.extend(_encode_name(Element.SECTION_START, key))
                section(value)
                out.append(Element.SECTION_END)
            elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
                out.extend(_encode_name(Element.LIST_START, key))
                for item in value:
                    out.append(Element.LIST_ITEM)
                    out.extend(_encode_value(item))
                out.append(Element.LIST_END)
            else:
                out.extend(_encode_name(Element.KEY_VALUE, key))
                out.extend(_encode_value(value))

    section(message)
    return bytes(out)


def encode_packet(ptype: PacketType, message: Encodable | None = None, name: str = "") -> bytes:
    """A whole segment: length header, packet type, name (named types), message."""
    body = bytes((ptype,))
    if ptype in NAMED:
        body += _encode_name(0, name)[1:]  # length octet and name, without an element type
    if message:
        body += encode_message(message)
    if len(body) > MAX_SEGMENT:
        raise ValueError("vici packet larger than 512 KiB")
    return struct.pack("!I", len(body)) + body


def text(value: Value | None, default: str = "") -> str:
    """A key/value as text (UTF-8, undecodable octets replaced); ``default`` when absent or not a value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return default
