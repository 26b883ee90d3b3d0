"""Text fields of an AuditEvent: the printable-ASCII fast path gives exactly what the full escaping gives
(control characters as \\xNN, lone surrogates escaped, secret-looking values redacted, long values cut)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.audit.events import _SECRET_VALUE, MAX_TEXT, REDACTED, AuditEvent, EventName, printable


def _reference(value: str) -> str:
    if _SECRET_VALUE.search(value):
        return REDACTED
    value = printable(value)
    if len(value) > MAX_TEXT:
        value = value[:MAX_TEXT] + f"...[{len(value) - MAX_TEXT} more characters cut]"
    return value


texts = st.text() | st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.sampled_from(
    ["", "lt-1-1.ss-lab.example", "a\nb", "tab\there", "\x7f", "\ud800x", "-----BEGIN PRIVATE KEY-----",
     "0s" + "A" * 20, "x" * (MAX_TEXT + 5), "é\x00"])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(reason=texts, remote_id=texts, detail=texts)
def test_text_fields_equal_the_full_escaping(reason: str, remote_id: str, detail: str) -> None:
    event = AuditEvent(EventName.IKE_UP, reason=reason, remote_id=remote_id, details={"note": detail})
    assert event.reason == _reference(reason)
    assert event.remote_id == _reference(remote_id)
    assert event.details["note"] == _reference(detail)
    assert "\n" not in event.reason and "\x00" not in event.remote_id
