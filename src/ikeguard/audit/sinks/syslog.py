"""RFC 5424 messages for audit records, and RFC 5425 octet-counting frames (pure; written by hand, no library
for structured-data encoding exists in the stdlib).

Layout: ``<PRI>1 TIME HOST ikeguard PID MSGID [ikeguard@32473 <event fields>][ipsec@32473 <details>]
[ikeguardChain@32473 seq prev hash][meta sequenceId][timeQuality tzKnown] MSG``. Facility 13 (log audit),
severity per event (docs/audit.md §7). The MSGID is the event name; ``seq`` is the de-duplication key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ikeguard.audit.chain import Record
from ikeguard.audit.events import EventName, Outcome, severity

FACILITY_LOG_AUDIT = 13
PEN = 32473  # RFC 5612 documentation PEN, as in RFC 5424's own examples
SD_EVENT = f"ikeguard@{PEN}"
SD_DETAILS = f"ipsec@{PEN}"
SD_CHAIN = f"ikeguardChain@{PEN}"
APP_NAME = "ikeguard"
_SD_ESCAPE = re.compile(r'(["\\\]])')


class SyslogParseError(ValueError):
    """Text that is not an RFC 5424 message of the shape we send."""


def _value(value: object) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return _SD_ESCAPE.sub(r"\\\1", text)  # RFC 5424 §6.3.3: escape '"', '\' and ']'


def _element(sd_id: str, params: Mapping[str, object]) -> str:
    inner = "".join(f' {name}="{_value(v)}"' for name, v in params.items())
    return f"[{sd_id}{inner}]"


def _header_token(text: str, limit: int) -> str:
    clean = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def format_message(record: Record, *, hostname: str, procid: str) -> bytes:
    """One RFC 5424 message (no framing) for a stored record."""
    body = dict(record.body)
    event = EventName(str(body.get("event")))
    outcome = Outcome(str(body.get("outcome", "unknown")))
    pri = FACILITY_LOG_AUDIT * 8 + severity(event, outcome)
    details = body.pop("details", {})
    fields = {k: v for k, v in body.items()}
    sd = _element(SD_EVENT, fields)
    if isinstance(details, Mapping) and details:
        sd += _element(SD_DETAILS, details)
    sd += _element(SD_CHAIN, {"seq": record.seq, "prev": record.prev.hex(), "hash": record.hash.hex()})
    if record.seq <= 2147483647:
        sd += _element("meta", {"sequenceId": record.seq})
    sd += _element("timeQuality", {"tzKnown": 1})
    summary = f"{event.value} {outcome.value}"
    if body.get("reason"):
        summary += f": {body['reason']}"
    header = (f"<{pri}>1 {record.time} {_header_token(hostname, 255)} {APP_NAME} "
              f"{_header_token(procid, 128)} {_header_token(event.value, 32)}")
    return f"{header} {sd} {summary}".encode()


def frame(message: bytes) -> bytes:
    """RFC 5425 §4.3 octet-counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


_HEADER = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")


def _parse_sd(text: str, pos: int) -> tuple[dict[str, dict[str, str]], int]:
    elements: dict[str, dict[str, str]] = {}
    if text.startswith("-", pos):
        return elements, pos + 1
    while pos < len(text) and text[pos] == "[":
        end_id = pos + 1
        while end_id < len(text) and text[end_id] not in " ]":
            end_id += 1
        sd_id = text[pos + 1 : end_id]
        params: dict[str, str] = {}
        pos = end_id
        while pos < len(text) and text[pos] == " ":
            eq = text.index("=", pos)
            name = text[pos + 1 : eq]
            if text[eq + 1] != '"':
                raise SyslogParseError(f"PARAM-VALUE of {name} not quoted")
            i, out = eq + 2, []
            while text[i] != '"':
                if text[i] == "\\" and text[i + 1] in '"\\]':
                    i += 1
                out.append(text[i])
                i += 1
            params[name] = "".join(out)
            pos = i + 1
        if pos >= len(text) or text[pos] != "]":
            raise SyslogParseError("unterminated SD-ELEMENT")
        elements[sd_id] = params
        pos += 1
    return elements, pos


def parse_message(text: str) -> dict[str, object]:
    """Parse one message we sent (also after a receiver stored it verbatim): header fields + SD elements."""
    m = _HEADER.match(text)
    if m is None:
        raise SyslogParseError("not an RFC 5424 message")
    try:
        sd, pos = _parse_sd(text, m.end())
    except (ValueError, IndexError) as exc:
        raise SyslogParseError(f"bad structured data: {exc}") from exc
    return {"pri": int(m.group(1)), "time": m.group(2), "hostname": m.group(3), "app": m.group(4),
            "procid": m.group(5), "msgid": m.group(6), "sd": sd, "msg": text[pos:].lstrip(" ")}
