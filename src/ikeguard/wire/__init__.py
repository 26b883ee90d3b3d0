"""IKEv2 wire format: bytes <-> frozen dataclasses, IANA registries, swanctl proposal strings (RFC 7296).

Written by hand on ``struct`` (no maintained Python IKEv2 codec exists that fits a sans-IO core).
"""

from ikeguard.wire.describe import describe_message, payload_label
from ikeguard.wire.errors import (
    FieldError,
    LengthError,
    ParseError,
    TruncatedError,
    UnsupportedCriticalPayload,
    UnsupportedVersion,
)
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.message import Message, decode_payloads, encode_message, encode_payloads, parse_message
from ikeguard.wire.natt import (
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    Esp,
    Ike,
    Keepalive,
    add_non_esp_marker,
    classify_udp4500,
)
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
)
from ikeguard.wire.proposal_string import (
    ProposalSpec,
    ProposalSyntaxError,
    describe_proposal,
    format_proposal,
    parse_proposal,
    parse_proposals,
)
from ikeguard.wire.rules import MessageRole, RuleViolation, check_exchange_rules
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.sk import (
    Fragment,
    SkProtector,
    assemble_fragments,
    decode_encrypted_message,
    encode_encrypted_message,
    encode_fragments,
    open_fragment,
)
from ikeguard.wire.transforms import Transform, TransformAttribute
from ikeguard.wire.ts import RawSelector, TrafficSelector, TsiPayload, TsrPayload

__all__ = [
    "HEADER_LEN",
    "NAT_KEEPALIVE",
    "NON_ESP_MARKER",
    "AuthPayload",
    "CertPayload",
    "CertReqPayload",
    "CfgAttribute",
    "CpPayload",
    "DeletePayload",
    "EapPayload",
    "Esp",
    "FieldError",
    "Fragment",
    "HeaderFlags",
    "IdiPayload",
    "IdrPayload",
    "Ike",
    "IkeHeader",
    "KePayload",
    "Keepalive",
    "LengthError",
    "Message",
    "MessageRole",
    "NoncePayload",
    "NotifyPayload",
    "ParseError",
    "Payload",
    "Proposal",
    "ProposalSpec",
    "ProposalSyntaxError",
    "RawSelector",
    "RuleViolation",
    "SaPayload",
    "SkPayload",
    "SkProtector",
    "SkfPayload",
    "TrafficSelector",
    "Transform",
    "TransformAttribute",
    "TruncatedError",
    "TsiPayload",
    "TsrPayload",
    "UnknownPayload",
    "UnsupportedCriticalPayload",
    "UnsupportedVersion",
    "VendorIdPayload",
    "add_non_esp_marker",
    "assemble_fragments",
    "check_exchange_rules",
    "classify_udp4500",
    "decode_encrypted_message",
    "decode_payloads",
    "describe_message",
    "describe_proposal",
    "encode_encrypted_message",
    "encode_fragments",
    "encode_message",
    "encode_payloads",
    "format_proposal",
    "open_fragment",
    "parse_message",
    "parse_proposal",
    "parse_proposals",
    "payload_label",
]
