"""The audit event catalogue (docs/reference.md, "Audit events") and the event the gateway gives the store.

Pure module: no IO, no clock. The store assigns ``seq`` and ``time`` (time is passed in by the caller), so an
``AuditEvent`` is only *what* happened. Secrets never enter a record: field names and values that look like
key material are refused with ``SecretInAuditEvent`` (PCI DSS 3.x / 10.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

DetailValue = str | int | bool


class EventName(StrEnum):
    """Event names (the syslog MSGID); extend, never rename (docs/reference.md "Audit events")."""

    IKE_UP = "ike.up"
    IKE_DOWN = "ike.down"
    IKE_REKEYED = "ike.rekeyed"
    IKE_REAUTH = "ike.reauth"
    CHILD_UP = "child.up"
    CHILD_DOWN = "child.down"
    CHILD_REKEYED = "child.rekeyed"
    AUTH_SUCCESS = "auth.success"
    AUTH_FAILURE = "auth.failure"
    CERT_VALIDATED = "cert.validated"
    CERT_REJECTED = "cert.rejected"
    CERT_EXPIRING = "cert.expiring"
    REVOCATION_FAILED = "revocation.failed"
    PROPOSAL_REJECTED = "proposal.rejected"
    TS_REJECTED = "ts.rejected"
    DPD_TIMEOUT = "dpd.timeout"
    DOS_COOKIES_ON = "dos.cookies_on"
    DOS_COOKIES_OFF = "dos.cookies_off"
    CONFIG_LOADED = "config.loaded"
    CONFIG_REJECTED = "config.rejected"
    WAIVER_APPLIED = "waiver.applied"
    PEER_ADDED = "peer.added"
    PEER_DISABLED = "peer.disabled"
    PEER_ENABLED = "peer.enabled"
    ADMIN_COMMAND = "admin.command"
    AUDIT_ACCESSED = "audit.accessed"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_ARCHIVED = "audit.archived"
    AUDIT_DISPOSED = "audit.disposed"  # an archive segment deleted after its retention, or refused inside it
    AUDIT_RESTORED = "audit.restored"  # an archive segment put back from offline storage
    AUDIT_INITIALISED = "audit.initialised"
    AUDIT_SINK_DOWN = "audit.sink.down"
    AUDIT_SINK_UP = "audit.sink.up"
    AUDIT_SPOOL_HIGH = "audit.spool.high"
    AUDIT_STORE_FAILED = "audit.store.failed"
    AUDIT_STORE_RECOVERED = "audit.store.recovered"
    CLOCK_STATUS = "clock.status"
    SERVICE_STARTED = "service.started"
    SERVICE_STOPPED = "service.stopped"
    HA_ROLE = "ha.role"  # docs/ha.md: keepalived made this node active or standby
    HA_TAKEOVER = "ha.takeover"
    HA_SYNC_FAILED = "ha.sync_failed"
    HSM_LOGIN = "hsm.login"  # docs/pki.md: HSM access log of PKCS#11 token keys
    HSM_SIGN = "hsm.sign"  # signatures per key, aggregated per minute (details.count)
    HSM_ERROR = "hsm.error"
    HSM_DECRYPT = "hsm.decrypt"  # one RSA decryption with a token key (a SCEP answer's content key)
    PKI_ISSUED = "pki.issued"  # docs/pki.md: issuance log (ACME, `ikeguard pki`)
    PKI_RENEWAL_FAILED = "pki.renewal_failed"
    PKI_REVOKED = "pki.revoked"
    PKI_CRL = "pki.crl"
    PKI_EXPIRING = "pki.expiring"
    # Emitted by the IKE engine in addition to the contract's names (extensions, never renames).
    IKE_FAILED = "ike.failed"
    IKE_RETRY = "ike.retry"
    IKE_REKEY_FAILED = "ike.rekey_failed"
    IKE_ADDRESS_CHANGED = "ike.address_changed"
    CHILD_FAILED = "child.failed"
    IKE_REDIRECTED = "ike.redirected"  # RFC 5685: a peer sent to another gateway, or arriving from one


class Outcome(StrEnum):
    """Success or failure of the action the event reports (PCI DSS 10.2.2)."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


# RFC 5424 §6.2.1 severities (docs/audit.md §7): 6 informational, 5 notice, 4 warning, 3 error.
_WARNING = {
    EventName.AUTH_FAILURE, EventName.CERT_REJECTED, EventName.CERT_EXPIRING, EventName.REVOCATION_FAILED,
    EventName.PROPOSAL_REJECTED, EventName.CONFIG_REJECTED, EventName.WAIVER_APPLIED, EventName.DPD_TIMEOUT,
    EventName.AUDIT_SINK_DOWN, EventName.AUDIT_SPOOL_HIGH, EventName.HSM_ERROR, EventName.PKI_RENEWAL_FAILED,
    EventName.PKI_EXPIRING,
}
_NOTICE = {
    EventName.TS_REJECTED, EventName.ADMIN_COMMAND, EventName.AUDIT_ACCESSED, EventName.AUDIT_EXPORTED,
    EventName.AUDIT_ARCHIVED, EventName.AUDIT_DISPOSED, EventName.AUDIT_RESTORED,
    EventName.PEER_ADDED, EventName.PEER_DISABLED, EventName.PEER_ENABLED,
    EventName.DOS_COOKIES_ON, EventName.DOS_COOKIES_OFF, EventName.CONFIG_LOADED, EventName.CLOCK_STATUS,
    EventName.AUDIT_INITIALISED, EventName.SERVICE_STARTED, EventName.SERVICE_STOPPED, EventName.HA_ROLE,
    EventName.HA_TAKEOVER, EventName.HSM_LOGIN, EventName.PKI_ISSUED, EventName.PKI_REVOKED,
    EventName.PKI_CRL,
}
_ERROR = {EventName.AUDIT_STORE_FAILED}


def severity(name: EventName, outcome: Outcome) -> int:
    """RFC 5424 severity (docs/audit.md: 3 error on logging failure, 4 warning on refusals)."""
    if name in _ERROR:
        return 3
    if name in _WARNING or outcome is Outcome.FAILURE:
        return 4
    if name in _NOTICE:
        return 5
    return 6


class AuditEventError(ValueError):
    """An audit event that must not be recorded as given (bad field, or a value that looks like a secret)."""


class SecretInAuditEvent(AuditEventError):
    """A field name or value looks like key material; secrets never enter the audit trail."""


_SECRET_NAME = re.compile(
    r"(secret|psk|passw|passphrase|private|skeyseed|keymat|^sk_|_sk_|nonce_?data|shared_?key|token|credential)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(r"(PRIVATE KEY-----|^0s[A-Za-z0-9+/=]{16,}$)")
_DETAIL_NAME = re.compile(r"^[a-z][a-z0-9_.]{0,31}\Z")  # \Z: "$" would admit a trailing newline
MAX_TEXT = 2048


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(value: str) -> str:
    """Control characters as ``\\xNN`` and lone surrogates as escapes, so a peer-chosen identity can neither
    split a log line nor break UTF-8 (records and their SIEM copies stay byte-identical)."""
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


REDACTED = "[redacted: looked like key material]"


def _check_text(name: str, value: str) -> str:
    # short values (connection names, addresses, identities, proposals) repeat in every record of an SA:
    # memoized, at most 4096 x 256 characters
    return _clean_text_memo(value) if len(value) <= 256 else _clean_text(value)


def _clean_text(value: str) -> str:
    # Values may come from a peer (identities, reasons): never raise on them (that would let a peer break
    # the caller); redact what looks like key material and cut what is too long, visibly.
    if _SECRET_VALUE.search(value):
        return REDACTED
    if not (value.isascii() and value.isprintable()):  # printable ASCII is already what printable() returns
        value = printable(value)
    if len(value) > MAX_TEXT:
        value = value[:MAX_TEXT] + f"...[{len(value) - MAX_TEXT} more characters cut]"
    return value


_clean_text_memo = lru_cache(maxsize=4096)(_clean_text)


@lru_cache(maxsize=1024)
def _check_detail_name(key: str) -> None:
    """Raise for a detail name that is not a short identifier or looks like a secret (good names memoized:
    the same few repeat in every record)."""
    if not _DETAIL_NAME.match(key):
        raise AuditEventError(f"audit detail name {key!r} is not a short lowercase identifier")
    if _SECRET_NAME.search(key):
        raise SecretInAuditEvent(f"audit detail {key!r} looks like a secret; refused")


@dataclass(frozen=True)
class AuditEvent:
    """One security-relevant event (docs/reference.md "Audit events"); the store adds seq, time and the chain.

    Empty strings / ``None`` mean "not applicable". ``details`` holds event-specific fields (e.g. ``command``,
    ``sink``, ``spi_in``); names are short lowercase identifiers and must not look like secrets.
    """

    event: EventName
    outcome: Outcome = Outcome.SUCCESS
    reason: str = ""
    connection: str = ""
    ike_uniqueid: int | None = None
    local_addr: str = ""
    local_id: str = ""
    remote_addr: str = ""
    remote_id: str = ""
    cert_subject: str = ""
    cert_serial: str = ""
    cert_issuer: str = ""
    user: str = ""
    proposal: str = ""
    admin: str = ""
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.event, EventName):
            object.__setattr__(self, "event", EventName(self.event))
        if not isinstance(self.outcome, Outcome):
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        state = self.__dict__  # frozen: written directly (what object.__setattr__ does, ~5 events per IKE SA)
        for name in _TEXT_FIELDS:
            value = state[name]
            if value and isinstance(value, str):  # "" stays "" (most fields of most events are empty)
                state[name] = _check_text(name, value)
        if self.ike_uniqueid is not None and (isinstance(self.ike_uniqueid, bool) or self.ike_uniqueid < 0):
            raise AuditEventError("ike_uniqueid must be a non-negative integer")
        clean: dict[str, DetailValue] = {}
        for key, value in self.details.items():
            if not isinstance(key, str):
                raise AuditEventError(f"audit detail name {key!r} is not a short lowercase identifier")
            _check_detail_name(key)
            if not isinstance(value, str | int | bool):
                raise AuditEventError(f"audit detail {key!r} must be str, int or bool")
            if isinstance(value, str):
                value = _check_text(key, value)
            clean[key] = value
        object.__setattr__(self, "details", MappingProxyType(dict(sorted(clean.items()))))

    def fields_dict(self) -> dict[str, str | int | bool | dict[str, DetailValue]]:
        """The non-empty fields as plain JSON-able values (the record body the store chains and seals)."""
        out: dict[str, str | int | bool | dict[str, DetailValue]] = {
            "event": self.event.value, "outcome": self.outcome.value,
        }
        for name in _PLAIN_FIELDS:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            out[name] = value
        if self.details:
            out["details"] = dict(self.details)
        return out


# The top-level record fields, in canonical order (used by sinks and the verifier).
EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AuditEvent))
_PLAIN_FIELDS = tuple(n for n in EVENT_FIELDS if n not in ("event", "outcome", "details"))
_TEXT_FIELDS = tuple(n for n in _PLAIN_FIELDS if n != "ike_uniqueid")  # checked by __post_init__


def event_from_fields(data: Mapping[str, object]) -> AuditEvent:
    """Rebuild an ``AuditEvent`` from ``fields_dict()`` output (used when reading records back)."""
    kwargs: dict[str, object] = {k: v for k, v in data.items() if k in EVENT_FIELDS}
    details = kwargs.get("details")
    if details is not None and not isinstance(details, Mapping):
        raise AuditEventError("details must be a mapping")
    return AuditEvent(**kwargs)  # type: ignore[arg-type]
