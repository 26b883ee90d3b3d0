"""One-line message summaries in strongSwan's log style, for traces and audit reasons.

``IKE_AUTH request 1 [ IDi CERT N(INIT_CONTACT) IDr AUTH SA TSi TSr N(MOBIKE_SUP) ]`` reads the same as
charon's "generating/parsed ... [ ... ]" lines, so an operator can put our log next to a strongSwan peer's.
Never prints payload contents (no keys, nonces or identities), only types.
"""

from __future__ import annotations

from ikeguard.wire.iana import CfgType, ExchangeType, NotifyType, name_of
from ikeguard.wire.message import Message
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
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
from ikeguard.wire.sa import SaPayload
from ikeguard.wire.ts import TsiPayload, TsrPayload

_NOTIFY_SHORT: dict[int, str] = {
    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD: "UNSUPPORTED_CRITICAL_PAYLOAD",
    NotifyType.INVALID_SYNTAX: "INVALID_SYNTAX",
    NotifyType.NO_PROPOSAL_CHOSEN: "NO_PROP",
    NotifyType.INVALID_KE_PAYLOAD: "INVAL_KE",
    NotifyType.AUTHENTICATION_FAILED: "AUTH_FAILED",
    NotifyType.TS_UNACCEPTABLE: "TS_UNACCEPT",
    NotifyType.TEMPORARY_FAILURE: "TEMP_FAIL",
    NotifyType.CHILD_SA_NOT_FOUND: "CHILD_SA_NOT_FOUND",
    NotifyType.INITIAL_CONTACT: "INIT_CONTACT",
    NotifyType.SET_WINDOW_SIZE: "SET_WINSIZE",
    NotifyType.ADDITIONAL_TS_POSSIBLE: "ADD_TS_POSS",
    NotifyType.IPCOMP_SUPPORTED: "IPCOMP_SUP",
    NotifyType.NAT_DETECTION_SOURCE_IP: "NATD_S_IP",
    NotifyType.NAT_DETECTION_DESTINATION_IP: "NATD_D_IP",
    NotifyType.COOKIE: "COOKIE",
    NotifyType.USE_TRANSPORT_MODE: "USE_TRANSP",
    NotifyType.HTTP_CERT_LOOKUP_SUPPORTED: "HTTP_CERT_LOOK_SUP",
    NotifyType.REKEY_SA: "REKEY_SA",
    NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED: "ESP_TFC_PAD_N",
    NotifyType.NON_FIRST_FRAGMENTS_ALSO: "NON_FIRST_FRAG",
    NotifyType.MOBIKE_SUPPORTED: "MOBIKE_SUP",
    NotifyType.ADDITIONAL_IP4_ADDRESS: "ADD_4_ADDR",
    NotifyType.ADDITIONAL_IP6_ADDRESS: "ADD_6_ADDR",
    NotifyType.NO_ADDITIONAL_ADDRESSES: "NO_ADD_ADDR",
    NotifyType.UPDATE_SA_ADDRESSES: "UPD_SA_ADDR",
    NotifyType.COOKIE2: "COOKIE2",
    NotifyType.NO_NATS_ALLOWED: "NO_NATS",
    NotifyType.AUTH_LIFETIME: "AUTH_LFT",
    NotifyType.MULTIPLE_AUTH_SUPPORTED: "MULT_AUTH",
    NotifyType.ANOTHER_AUTH_FOLLOWS: "AUTH_FOLLOWS",
    NotifyType.REDIRECT_SUPPORTED: "REDIR_SUP",
    NotifyType.REDIRECT: "REDIR",
    NotifyType.REDIRECTED_FROM: "REDIR_FROM",
    NotifyType.EAP_ONLY_AUTHENTICATION: "EAP_ONLY",
    NotifyType.CHILDLESS_IKEV2_SUPPORTED: "CHDLESS_SUP",
    NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED: "MSG_ID_SYN_SUP",
    NotifyType.IKEV2_FRAGMENTATION_SUPPORTED: "FRAG_SUP",
    NotifyType.SIGNATURE_HASH_ALGORITHMS: "HASH_ALG",
    NotifyType.USE_PPK: "USE_PPK",
    NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED: "IKE_INT_SUP",
    NotifyType.ADDITIONAL_KEY_EXCHANGE: "ADD_KE",
    NotifyType.SA_RESOURCE_INFO: "RES_INFO",
}

_CP_SHORT: dict[int, str] = {
    CfgType.REQUEST: "CPRQ",
    CfgType.REPLY: "CPRP",
    CfgType.SET: "CPS",
    CfgType.ACK: "CPA",
}
_EAP_CODES: dict[int, str] = {1: "EAP/REQ", 2: "EAP/RES", 3: "EAP/SUCC", 4: "EAP/FAIL"}

_SIMPLE: dict[type, str] = {
    SaPayload: "SA",
    KePayload: "KE",
    NoncePayload: "No",
    IdiPayload: "IDi",
    IdrPayload: "IDr",
    CertPayload: "CERT",
    CertReqPayload: "CERTREQ",
    AuthPayload: "AUTH",
    DeletePayload: "D",
    VendorIdPayload: "V",
    TsiPayload: "TSi",
    TsrPayload: "TSr",
}


def payload_label(payload: Payload) -> str:
    """Short label of one payload: ``SA``, ``N(NATD_S_IP)``, ``CPRQ``, ``EAP/RES``, ``EF(2/3)``, ..."""
    simple = _SIMPLE.get(type(payload))
    if simple is not None:
        return simple
    if isinstance(payload, NotifyPayload):
        notify = int(payload.notify_type)
        return f"N({_NOTIFY_SHORT.get(notify, name_of(NotifyType, notify))})"
    if isinstance(payload, CpPayload):
        return _CP_SHORT.get(int(payload.cfg_type), f"CP({int(payload.cfg_type)})")
    if isinstance(payload, EapPayload):
        return _EAP_CODES.get(payload.code, "EAP")
    if isinstance(payload, SkPayload):
        return "E"
    if isinstance(payload, SkfPayload):
        return f"EF({payload.number}/{payload.total})"
    if isinstance(payload, UnknownPayload):
        return f"UNKNOWN({payload.type})"
    return f"PAYLOAD({payload.type})"


def describe_message(message: Message) -> str:
    """``<EXCHANGE> request|response <message ID> [ <labels> ]`` with decrypted content when opened."""
    exchange = name_of(ExchangeType, int(message.header.exchange_type))
    role = "response" if message.header.is_response else "request"
    payloads = message.content if message.inner is not None else message.payloads
    labels = " ".join(payload_label(p) for p in payloads)
    return f"{exchange} {role} {message.header.message_id} [ {labels} ]"
