"""Engine view of IKE messages over the ``ikeguard.wire`` codec: decode (decrypt, reassemble, rule-check)
and encode (encrypt, fragment) in one place, so tasks only see payload dataclasses."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ikeguard.crypto.errors import CryptoError
from ikeguard.wire.errors import ParseError
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader, decode_header
from ikeguard.wire.iana import ExchangeType, NotifyType, PayloadType, ProtocolId
from ikeguard.wire.message import GENERIC_HEADER_LEN, Message, encode_payloads, parse_message, scan_payloads
from ikeguard.wire.message import encode_message as wire_encode
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import NotifyPayload, SkfPayload
from ikeguard.wire.rules import MessageRole, PayloadScreen, RuleError, check_exchange_rules
from ikeguard.wire.sk import (
    SkProtector,
    decode_encrypted_message,
    encode_encrypted_message,
    encode_fragments,
    open_fragment,
)

if TYPE_CHECKING:
    from ikeguard.engine.fragments import Reassembler

P = TypeVar("P", bound=Payload)


class MessageError(Exception):
    """A message we cannot accept: malformed, failing integrity, or breaking the exchange rules.

    ``notify`` is set when the message was authentic (or plaintext IKE_SA_INIT) and RFC 7296 §2.21.2 wants
    an answer (INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD); unauthenticated garbage is dropped silently.
    """

    def __init__(self, reason: str, notify: NotifyType | None = None) -> None:
        super().__init__(reason)
        self.notify = notify


def _authentic(data: bytes, protector: SkProtector) -> bool:
    """Whether the SK (or SKF) payload passes its integrity check (decided only on the error path, from the
    walked chain: the message may have been refused before its bodies were decoded)."""
    try:
        header_first = decode_header(data)[1]
        chain = scan_payloads(data[HEADER_LEN:], header_first, HEADER_LEN)
    except ParseError:
        return False
    last = chain[-1] if chain else None
    if last is None or last.type not in (PayloadType.SK, PayloadType.SKF):
        return False
    body = last.body if last.type == PayloadType.SK else last.body[4:]  # SKF: numbering is in the AAD
    try:
        protector.open(data[: len(data) - len(body)], body)
    except (CryptoError, ValueError):
        return False
    return True


@dataclass
class InMessage:
    """A received, decrypted message: header fields and its content payloads."""

    exchange: ExchangeType
    message_id: int
    response: bool
    payloads: tuple[Payload, ...]
    spi_i: bytes = b""
    spi_r: bytes = b""
    partial: bool = False  # a fragment was stored; the message is not complete yet
    # IKE_INTERMEDIATE only: IntAuth_A | IntAuth_P of this message as if unfragmented (RFC 9242 §3.3.2)
    int_auth_ap: bytes = field(default=b"", repr=False)

    def get(self, cls: type[P]) -> P | None:
        """First payload of class ``cls``."""
        for p in self.payloads:  # plain loops: tasks look up ~10 payloads/notifies per message
            if isinstance(p, cls):
                return p
        return None

    def get_all(self, cls: type[P]) -> tuple[P, ...]:
        """Every payload of class ``cls``."""
        return tuple(p for p in self.payloads if isinstance(p, cls))

    def notify(self, notify_type: NotifyType) -> NotifyPayload | None:
        """First Notify of ``notify_type``."""
        for p in self.payloads:
            if isinstance(p, NotifyPayload) and p.notify_type == notify_type:
                return p
        return None

    def notifies(self) -> Iterator[NotifyPayload]:
        """All Notify payloads."""
        return (p for p in self.payloads if isinstance(p, NotifyPayload))

    def error_notify(self) -> NotifyPayload | None:
        """The first error-type Notify (type < 16384, RFC 7296 §3.10.1)."""
        return next((n for n in self.notifies() if int(n.notify_type) < 16384), None)


@dataclass
class OutMessage:
    """A message being built by tasks."""

    exchange: ExchangeType
    message_id: int
    response: bool
    payloads: list[Payload] = field(default_factory=list)

    def add(self, payload: Payload) -> None:
        """Append a payload."""
        self.payloads.append(payload)

    def add_notify(
        self,
        notify_type: NotifyType | int,
        data: bytes = b"",
        protocol: ProtocolId | int = 0,
        spi: bytes = b"",
    ) -> None:
        """Append a Notify payload."""
        self.payloads.append(NotifyPayload(notify_type, data, protocol, spi))


def _role(response: bool) -> MessageRole:
    return MessageRole.RESPONSE if response else MessageRole.REQUEST


def decode_message(data: bytes, protector: SkProtector | None, reassembler: Reassembler | None) -> InMessage:
    """Parse, decrypt (when ``protector`` is given), reassemble fragments and check the exchange rules.

    The rules (``wire.rules``) see each chain's payload types before any of its bodies is decoded, so a
    payload the exchange does not allow costs nothing to refuse. What earns an answer follows RFC 7296
    §2.21.2: the error notify when the message is authentic (or plaintext IKE_SA_INIT breaking the rules, or
    carrying an unsupported critical payload, §2.5); anything else is dropped silently.
    """
    data = bytes(data)
    try:
        header = decode_header(data)[0]
        screen = PayloadScreen(header, _role(header.is_response))
        try:
            outer = parse_message(data, screen=screen.outer)
        except RuleError as exc:
            answer = protector is None or _authentic(data, protector)  # plaintext, or authentic
            raise MessageError(str(exc), exc.notify if answer else None) from exc
        message: Message
        if protector is None:
            message = outer
        elif outer.payloads and isinstance(outer.payloads[-1], SkfPayload):
            if reassembler is None:
                raise MessageError("fragment received but fragmentation is not in use")
            fragment = open_fragment(data, protector, outer=outer)
            try:
                assembled = reassembler.add(fragment, screen.inner)
            except RuleError as exc:  # every fragment was authentic
                raise MessageError(str(exc), exc.notify) from exc
            if assembled is None:
                return InMessage(
                    ExchangeType(int(header.exchange_type)),
                    header.message_id,
                    header.is_response,
                    (),
                    header.spi_i,
                    header.spi_r,
                    partial=True,
                )
            message = assembled
        else:
            try:
                message = decode_encrypted_message(data, protector, outer=outer, screen=screen.inner)
            except RuleError as exc:  # raised for the decrypted chain: authentic
                raise MessageError(str(exc), exc.notify) from exc
            except ParseError as exc:
                notify = exc.notify if _authentic(data, protector) else None
                raise MessageError(str(exc), notify) from exc
        violation = check_exchange_rules(message, screen.role)
    except MessageError:
        raise
    except ParseError as exc:
        # Plaintext (IKE_SA_INIT): only an unknown critical payload earns an answer (RFC 7296 §2.5).
        critical = exc.notify is NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and protector is None
        raise MessageError(str(exc), exc.notify if critical else None) from exc
    except (CryptoError, ValueError) as exc:
        raise MessageError(str(exc)) from exc
    if violation is not None:
        raise MessageError(f"{violation.reason} ({violation.source})", violation.notify)
    int_auth_ap = b""
    if header.exchange_type == ExchangeType.IKE_INTERMEDIATE and protector is not None:
        int_auth_ap = _received_int_auth(header, message)
    return InMessage(
        ExchangeType(int(header.exchange_type)),
        header.message_id,
        header.is_response,
        message.content,
        header.spi_i,
        header.spi_r,
        int_auth_ap=int_auth_ap,
    )


def _int_auth_a(header: IkeHeader, first_inner: int, plain_len: int) -> bytes:
    """IntAuth_A: the IKE header and the Encrypted payload header whose Length / Payload Length count the
    inner payloads only, not IV, padding, pad length or ICV, and whose Next Payload fields are those of an
    unfragmented ``HDR, SK {...}`` message (RFC 9242 §3.3.2; strongSwan 6.1 computes the same)."""
    sk_len = GENERIC_HEADER_LEN + plain_len
    return header.encode(PayloadType.SK, HEADER_LEN + sk_len) + struct.pack("!BBH", first_inner, 0, sk_len)


def _received_int_auth(header: IkeHeader, message: Message) -> bytes:
    """IntAuth_A | IntAuth_P of a received IKE_INTERMEDIATE message (whole or reassembled from SKF parts)."""
    sk = message.sk
    first_inner = sk.first_inner if sk is not None else 0
    return _int_auth_a(header, first_inner, len(message.plaintext)) + message.plaintext


def sent_int_auth(msg: OutMessage, spi_i: bytes, spi_r: bytes, *, initiator: bool) -> bytes:
    """IntAuth_A | IntAuth_P of an IKE_INTERMEDIATE message of ours (RFC 9242 §3.3.2), fragmented or not."""
    first, plaintext = encode_payloads(msg.payloads)
    return _int_auth_a(_header(msg, spi_i, spi_r, initiator), first, len(plaintext)) + plaintext


def _header(msg: OutMessage, spi_i: bytes, spi_r: bytes, initiator: bool) -> IkeHeader:
    flags = HeaderFlags.NONE
    if initiator:
        flags |= HeaderFlags.INITIATOR
    if msg.response:
        flags |= HeaderFlags.RESPONSE
    return IkeHeader(spi_i, spi_r, msg.exchange, flags, msg.message_id)


def encode_message(
    msg: OutMessage,
    spi_i: bytes,
    spi_r: bytes,
    *,
    initiator: bool,
    protector: SkProtector | None,
    fragment_size: int = 0,
) -> list[bytes]:
    """Datagrams for ``msg``: plain for IKE_SA_INIT, SK otherwise, SKF fragments above ``fragment_size``."""
    header = _header(msg, spi_i, spi_r, initiator)
    if protector is None:
        return [wire_encode(Message(header, tuple(msg.payloads)))]
    whole = encode_encrypted_message(header, msg.payloads, protector)
    if fragment_size and len(whole) > fragment_size and msg.exchange is not ExchangeType.IKE_SA_INIT:
        return encode_fragments(header, msg.payloads, protector, fragment_size)
    return [whole]
