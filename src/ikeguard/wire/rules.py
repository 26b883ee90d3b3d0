"""Which payloads each exchange may, must and must not carry, and which must be encrypted (RFC 7296 §1.2-1.5).

One table, read by :func:`check_exchange_rules`. It states what holds for every message of an exchange;
rules that depend on the SA's state (e.g. IDi in the *first* IKE_AUTH request, §2.16 EAP rounds) belong
to the engine's tasks. Unknown non-critical payloads are never a violation (§2.5: they are skipped).

Every rule depends only on the payload types, so :class:`PayloadScreen` applies the same table to a chain
whose headers were walked but whose bodies are not decoded yet (``wire.message.Screen``): a payload the
exchange does not allow, or more of a type than :data:`MAX_OCCURRENCES` permits, costs nothing to refuse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from ikeguard.wire.errors import FieldError
from ikeguard.wire.header import HEADER_LEN, IkeHeader
from ikeguard.wire.iana import ExchangeType, NotifyType, PayloadType, name_of
from ikeguard.wire.message import DECODERS, Message
from ikeguard.wire.payload_base import Payload

PT = PayloadType


class MessageRole(Enum):
    """Whether the message is a request or a response (its R flag must agree, RFC 7296 §3.1)."""

    REQUEST = "request"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class ExchangeRule:
    """Payload rules for requests or responses of one exchange type, with the RFC section they come from."""

    encrypted: bool
    allowed: frozenset[int]
    required: frozenset[int] = frozenset()
    together: tuple[frozenset[int], ...] = ()
    notify_only_ok: bool = False
    """Only Notify (and Vendor ID) payloads is acceptable: error or COOKIE answers (§1.2, §2.6)."""
    source: str = "RFC 7296"


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """Why a message breaks its exchange's rules; ``notify`` is the answer RFC 7296 §2.21 prescribes."""

    reason: str
    payload_type: int | None = None
    notify: NotifyType = NotifyType.INVALID_SYNTAX
    source: str = "RFC 7296"


_SINGLE = frozenset({PT.SA, PT.KE, PT.NONCE, PT.IDI, PT.IDR, PT.AUTH, PT.TSI, PT.TSR, PT.CP, PT.EAP})
"""Payload types that may appear at most once per message."""

_CHILD = frozenset({PT.SA, PT.TSI, PT.TSR})

MAX_OCCURRENCES: dict[int, int] = {
    **{int(ptype): 1 for ptype in _SINGLE},
    PT.NOTIFY: 20,
    PT.VENDOR_ID: 20,
    PT.DELETE: 20,
    PT.CERTREQ: 20,
    PT.CERT: 8,
}
"""How many payloads of a type one message may carry. RFC 7296 allows repeating Notify, Vendor ID, Delete,
CERT and CERTREQ without a limit; these are the limits strongSwan's charon applies to what it receives
(20 Notify, Vendor ID and Delete payloads, 8 certificates), so no interoperating peer sends more."""

RULES: dict[tuple[int, MessageRole], ExchangeRule] = {
    (ExchangeType.IKE_SA_INIT, MessageRole.REQUEST): ExchangeRule(
        encrypted=False,
        allowed=frozenset({PT.SA, PT.KE, PT.NONCE, PT.NOTIFY, PT.VENDOR_ID, PT.CERTREQ}),
        required=frozenset({PT.SA, PT.KE, PT.NONCE}),
        source="RFC 7296 §1.2",
    ),
    (ExchangeType.IKE_SA_INIT, MessageRole.RESPONSE): ExchangeRule(
        encrypted=False,
        allowed=frozenset({PT.SA, PT.KE, PT.NONCE, PT.NOTIFY, PT.VENDOR_ID, PT.CERTREQ}),
        required=frozenset({PT.SA, PT.KE, PT.NONCE}),
        notify_only_ok=True,
        source="RFC 7296 §1.2, §2.6",
    ),
    (ExchangeType.IKE_AUTH, MessageRole.REQUEST): ExchangeRule(
        encrypted=True,
        allowed=frozenset(
            {PT.IDI, PT.IDR, PT.CERT, PT.CERTREQ, PT.AUTH, PT.SA, PT.TSI, PT.TSR, PT.NOTIFY, PT.VENDOR_ID}
            | {PT.CP, PT.EAP, PT.GSPM}
        ),
        together=(_CHILD,),
        source="RFC 7296 §1.2, §2.16",
    ),
    (ExchangeType.IKE_AUTH, MessageRole.RESPONSE): ExchangeRule(
        encrypted=True,
        allowed=frozenset(
            {PT.IDR, PT.CERT, PT.AUTH, PT.SA, PT.TSI, PT.TSR, PT.NOTIFY, PT.VENDOR_ID, PT.CP, PT.EAP, PT.GSPM}
        ),
        together=(_CHILD,),
        notify_only_ok=True,
        source="RFC 7296 §1.2, §2.16",
    ),
    (ExchangeType.CREATE_CHILD_SA, MessageRole.REQUEST): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.SA, PT.KE, PT.NONCE, PT.TSI, PT.TSR, PT.NOTIFY, PT.VENDOR_ID}),
        required=frozenset({PT.SA, PT.NONCE}),
        together=(frozenset({PT.TSI, PT.TSR}),),
        source="RFC 7296 §1.3",
    ),
    (ExchangeType.CREATE_CHILD_SA, MessageRole.RESPONSE): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.SA, PT.KE, PT.NONCE, PT.TSI, PT.TSR, PT.NOTIFY, PT.VENDOR_ID}),
        required=frozenset({PT.SA, PT.NONCE}),
        together=(frozenset({PT.TSI, PT.TSR}),),
        notify_only_ok=True,
        source="RFC 7296 §1.3",
    ),
    (ExchangeType.INFORMATIONAL, MessageRole.REQUEST): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.NOTIFY, PT.DELETE, PT.CP, PT.VENDOR_ID}),
        source="RFC 7296 §1.4",
    ),
    (ExchangeType.INFORMATIONAL, MessageRole.RESPONSE): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.NOTIFY, PT.DELETE, PT.CP, PT.VENDOR_ID}),
        source="RFC 7296 §1.4",
    ),
    (ExchangeType.IKE_INTERMEDIATE, MessageRole.REQUEST): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.KE, PT.NOTIFY, PT.VENDOR_ID}),
        source="RFC 9242 §3, RFC 9370 §2.2.2",
    ),
    (ExchangeType.IKE_INTERMEDIATE, MessageRole.RESPONSE): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.KE, PT.NOTIFY, PT.VENDOR_ID}),
        notify_only_ok=True,
        source="RFC 9242 §3, RFC 9370 §2.2.2",
    ),
    (ExchangeType.IKE_FOLLOWUP_KE, MessageRole.REQUEST): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.KE, PT.NOTIFY, PT.VENDOR_ID}),
        required=frozenset({PT.KE}),
        source="RFC 9370 §2.2.4",
    ),
    (ExchangeType.IKE_FOLLOWUP_KE, MessageRole.RESPONSE): ExchangeRule(
        encrypted=True,
        allowed=frozenset({PT.KE, PT.NOTIFY, PT.VENDOR_ID}),
        required=frozenset({PT.KE}),
        notify_only_ok=True,
        source="RFC 9370 §2.2.4",
    ),
    (ExchangeType.IKE_SESSION_RESUME, MessageRole.REQUEST): ExchangeRule(
        encrypted=False,
        allowed=frozenset({PT.NONCE, PT.NOTIFY, PT.VENDOR_ID}),
        required=frozenset({PT.NONCE, PT.NOTIFY}),
        source="RFC 5723 §4.3.1",
    ),
    (ExchangeType.IKE_SESSION_RESUME, MessageRole.RESPONSE): ExchangeRule(
        encrypted=False,
        allowed=frozenset({PT.NONCE, PT.NOTIFY, PT.VENDOR_ID}),
        required=frozenset({PT.NONCE}),
        notify_only_ok=True,
        source="RFC 5723 §4.3.1",
    ),
}
"""(exchange type, role) -> rule."""

_ENCRYPTED = frozenset({PT.SK, PT.SKF})


def _name(ptype: int) -> str:
    return name_of(PayloadType, ptype)


def check_exchange_rules(
    message: Message, role: MessageRole, encrypted_payloads: Sequence[Payload] | None = None
) -> RuleViolation | None:
    """The first rule ``message`` breaks, or ``None``.

    ``encrypted_payloads`` are the decrypted SK contents (default: ``message.inner``); when an encrypted
    message has not been opened, only the outer structure is checked.
    """
    inner = encrypted_payloads if encrypted_payloads is not None else message.inner
    return check_payload_types(
        message.header,
        role,
        [p.type for p in message.payloads],
        None if inner is None else [p.type for p in inner],
    )


def check_payload_types(
    header: IkeHeader, role: MessageRole, outer: Sequence[int], inner: Sequence[int] | None = None
) -> RuleViolation | None:
    """The first rule a message of these payload types breaks, or ``None`` (see :func:`check_exchange_rules`).

    ``outer`` are the types of the message's own chain (SK or SKF last when encrypted), ``inner`` those of
    the decrypted chain, ``None`` while it is not opened. The verdict depends on nothing else, and the same
    few lists come with every SA, so chains of up to :data:`_MEMO_TYPES` payloads are memoised in a bounded
    LRU (a peer varying its lists only evicts entries; a longer chain is checked without it).
    """
    key = (int(header.exchange_type), header.is_response, role, tuple(outer),
           None if inner is None else tuple(inner))
    if len(key[3]) + len(key[4] or ()) > _MEMO_TYPES:
        return _verdict(*key)
    return _memo_verdict(*key)


_MEMO_TYPES = 24


def _verdict(exchange_type: int, is_response: bool, role: MessageRole, outer: tuple[int, ...],
             inner: tuple[int, ...] | None) -> RuleViolation | None:
    if is_response != (role is MessageRole.RESPONSE):
        return RuleViolation(f"R flag does not mark the message as a {role.value}", source="RFC 7296 §3.1")
    rule = RULES.get((exchange_type, role))
    if rule is None:
        return RuleViolation(f"unknown exchange type {exchange_type}", source="RFC 7296 §3.1")
    plain = [t for t in outer if t not in _ENCRYPTED]
    has_sk = len(plain) != len(outer)
    exchange = name_of(ExchangeType, exchange_type)
    if rule.encrypted:
        if not has_sk:
            return RuleViolation(f"{exchange} {role.value} must be encrypted", PT.SK, source=rule.source)
        known_outer = [t for t in plain if t in DECODERS]
        if known_outer:
            ptype = known_outer[0]
            return RuleViolation(
                f"{_name(ptype)} payload outside the SK payload of {exchange}", ptype, source="RFC 7296 §3.14"
            )
    elif has_sk:
        return RuleViolation(f"{exchange} {role.value} must not be encrypted", PT.SK, source=rule.source)

    if rule.encrypted and inner is None:
        return None  # not opened yet: nothing more can be checked
    content = [t for t in (*plain, *(inner or ())) if t in DECODERS or t == PT.GSPM]
    present = set(content)

    for ptype in content:
        if ptype not in rule.allowed:
            return RuleViolation(
                f"{_name(ptype)} payload not allowed in {exchange} {role.value}", ptype, source=rule.source
            )
    counts = Counter(content)
    for ptype in sorted(counts):
        limit = MAX_OCCURRENCES.get(ptype)
        if limit is not None and counts[ptype] > limit:
            what = f"one {_name(ptype)} payload" if limit == 1 else f"{limit} {_name(ptype)} payloads"
            return RuleViolation(f"more than {what}", ptype, source=rule.source)
    if rule.notify_only_ok and present and present <= {PT.NOTIFY, PT.VENDOR_ID} and PT.NOTIFY in present:
        return None
    for ptype in sorted(rule.required):
        if ptype not in present:
            return RuleViolation(
                f"{exchange} {role.value} lacks the {_name(ptype)} payload", ptype, source=rule.source
            )
    for group in rule.together:
        if present & group and not group <= present:
            missing = sorted(group - present)[0]
            names = "/".join(_name(t) for t in sorted(group))
            return RuleViolation(
                f"{names} must come together: {_name(missing)} is missing", missing, source=rule.source
            )
    return None


_memo_verdict = lru_cache(maxsize=512)(_verdict)


class RuleError(FieldError):
    """A chain breaks its exchange's rules (found by :class:`PayloadScreen` before any body was decoded)."""

    def __init__(self, violation: RuleViolation, offset: int = HEADER_LEN) -> None:
        self.violation = violation
        super().__init__(f"{violation.reason} ({violation.source})", offset, violation.payload_type)
        self.notify = violation.notify


@dataclass
class PayloadScreen:
    """The exchange rules as ``wire.message.Screen`` callables for one message: :meth:`outer` for its own
    chain, then :meth:`inner` for the decrypted one (or the reassembled one of its fragments).

    Raising :class:`RuleError` before the bodies are decoded bounds what a disallowed payload can cost.
    """

    header: IkeHeader
    role: MessageRole
    outer_types: tuple[int, ...] = field(default=(), init=False)

    def outer(self, types: Sequence[int]) -> None:
        """Check the message's own chain (for an encrypted exchange: only what may stand outside SK)."""
        self.outer_types = tuple(types)
        violation = check_payload_types(self.header, self.role, self.outer_types)
        if violation is not None:
            raise RuleError(violation)

    def inner(self, types: Sequence[int]) -> None:
        """Check the decrypted chain together with the outer one."""
        outer = self.outer_types or (int(PT.SK),)
        violation = check_payload_types(self.header, self.role, outer, types)
        if violation is not None:
            raise RuleError(violation)
