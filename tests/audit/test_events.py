"""The event catalogue: contract names, field round trip, secrets refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.audit.events import (
    REDACTED,
    AuditEvent,
    AuditEventError,
    EventName,
    Outcome,
    event_from_fields,
    severity,
)

CONTRACT = str.split(
    "ike.up ike.down ike.rekeyed ike.reauth child.up child.down child.rekeyed auth.success auth.failure "
    "cert.validated cert.rejected cert.expiring revocation.failed proposal.rejected ts.rejected dpd.timeout "
    "dos.cookies_on dos.cookies_off config.loaded config.rejected waiver.applied peer.added peer.disabled "
    "peer.enabled admin.command audit.accessed audit.exported audit.sink.down audit.sink.up clock.status"
)


def test_every_contract_name_exists() -> None:
    values = {e.value for e in EventName}
    assert set(CONTRACT) <= values


def test_fields_round_trip_and_omit_empty() -> None:
    ev = AuditEvent(EventName.AUTH_FAILURE, Outcome.FAILURE, reason="AUTHENTICATION_FAILED: bad signature",
                    connection="merchants", ike_uniqueid=7, remote_addr="192.0.2.7",
                    remote_id="a.example", details={"auth_method": "ecdsa", "attempt": 3, "initiator": False})
    data = ev.fields_dict()
    assert "local_id" not in data and data["ike_uniqueid"] == 7
    assert event_from_fields(data) == ev
    assert severity(ev.event, ev.outcome) == 4
    assert severity(EventName.AUDIT_STORE_FAILED, Outcome.FAILURE) == 3
    assert severity(EventName.IKE_UP, Outcome.SUCCESS) == 6


@pytest.mark.parametrize("name", ["psk", "shared_secret", "sk_ei", "private_key", "password", "SKEYSEED"])
def test_secret_looking_detail_names_refused(name: str) -> None:
    with pytest.raises(AuditEventError):
        AuditEvent(EventName.IKE_UP, details={name: "x"})


def test_secret_looking_values_redacted_never_raised() -> None:
    """Values can come from a peer: they are redacted or cut, never an exception in the caller."""
    ev = AuditEvent(EventName.AUTH_FAILURE, remote_id="-----BEGIN EC PRIVATE KEY-----\nMHc",
                    details={"value": "0sdGhpcyBpcyBhIHNlY3JldCBwc2s="})
    assert ev.remote_id == REDACTED and ev.details["value"] == REDACTED
    long = AuditEvent(EventName.AUTH_FAILURE, remote_id="x" * 5000).remote_id
    assert long.startswith("x" * 2048) and long.endswith("[2952 more characters cut]")


def test_unknown_event_name_refused() -> None:
    with pytest.raises(ValueError):
        AuditEvent("ike.exploded")  # type: ignore[arg-type]


def test_event_is_immutable() -> None:
    ev = AuditEvent(EventName.IKE_UP, details={"a": 1})
    with pytest.raises(TypeError):
        ev.details["a"] = 2  # type: ignore[index]


@settings(max_examples=80, deadline=None)
@given(reason=st.text(max_size=200).filter(lambda s: "PRIVATE KEY-----" not in s),
       uid=st.none() | st.integers(min_value=0, max_value=2**40),
       details=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
           lambda k: not any(w in k for w in ("secret", "psk", "passw", "private", "token", "keymat"))
           and not k.startswith("sk_") and "_sk_" not in k),
           st.integers() | st.booleans() | st.text(alphabet="abcdef0123456789:. ", max_size=20), max_size=5))
def test_round_trip_property(reason: str, uid: int | None, details: dict[str, str | int | bool]) -> None:
    ev = AuditEvent(EventName.CHILD_UP, Outcome.SUCCESS, reason=reason, ike_uniqueid=uid, details=details)
    assert event_from_fields(ev.fields_dict()) == ev
