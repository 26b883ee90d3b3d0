"""Parsers for the scalar value syntaxes of the configuration: durations, sizes, addresses, OIDs.

Written by hand (no library parses strongSwan-style values). Every parser raises ``ValueError`` whose
message says what was expected; the loader adds file and key path.
"""

from __future__ import annotations

import ipaddress
import re

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_EXPECTED = 'expected a duration like "90s", "30m", "8h" or "1d" (a bare number means seconds)'
_DURATION_RE = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$")

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
SIZE_EXPECTED = 'expected a size like "500M", "64G" or a plain number (K/M/G/T are powers of 1024)'
_SIZE_RE = re.compile(r"^\s*(\d{1,15})\s*([KMGT]?)\s*$", re.IGNORECASE)

_OID_RE = re.compile(r"^[0-2](\.(0|[1-9]\d*))+\Z")


def parse_duration(value: object) -> int:
    """``"90s"``/``"30m"``/``"8h"``/``"1d"`` or an integer number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(DURATION_EXPECTED)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(DURATION_EXPECTED + "; negative durations are not allowed")
        return value
    if not isinstance(value, str):
        raise ValueError(DURATION_EXPECTED)
    match = _DURATION_RE.match(value)
    if match is None:
        raise ValueError(DURATION_EXPECTED)
    number, unit = match.groups()
    return int(number) * DURATION_UNITS[unit or "s"]


def format_duration(seconds: int) -> str:
    """Shortest exact unit form: 86400 -> ``"1d"``, 5400 -> ``"90m"``, 91 -> ``"91s"``."""
    for unit in ("d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_size(value: object) -> int:
    """``"500M"``/``"64G"`` or an integer -> a count (bytes or packets)."""
    if isinstance(value, bool):
        raise ValueError(SIZE_EXPECTED)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(SIZE_EXPECTED + "; negative sizes are not allowed")
        return value
    if not isinstance(value, str):
        raise ValueError(SIZE_EXPECTED)
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(SIZE_EXPECTED)
    number, unit = match.groups()
    return int(number) * SIZE_UNITS[unit.upper()]


def format_size(count: int) -> str:
    """Shortest exact unit form: 64 * 1024**3 -> ``"64G"``."""
    for unit in ("T", "G", "M", "K"):
        size = SIZE_UNITS[unit]
        if count and count % size == 0:
            return f"{count // size}{unit}"
    return str(count)


def parse_ip_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 address (no prefix)."""
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(
            "expected an IPv4 address (192.0.2.1) or an IPv6 address (2001:db8::1)"
        ) from None


def parse_peer_address(value: str) -> str:
    """``remote_addrs``/``local_addrs`` entry: ``%any``, an address, a CIDR or a host name."""
    text = value.strip()
    if text in ("%any", "%any4", "%any6"):
        return text
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", text):
        return text
    raise ValueError("expected %any, an IPv4/IPv6 address, a CIDR or a host name")


def parse_host_port(value: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``"127.0.0.1:6514"``, ``"[2001:db8::1]:6514"`` or ``"host:port"``."""
    text = value.strip()
    expected = 'expected "host:port" (IPv6 as "[2001:db8::1]:6514")'
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(expected)
        parse_ip_address(host)
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
        if ":" in host:
            raise ValueError(expected)
    if not host:
        raise ValueError(expected)
    if not port_text:
        if default_port is None:
            raise ValueError(expected)
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(expected + "; the port must be 1-65535")
    return host, int(port_text)


def parse_oid(value: str) -> str:
    """A dotted object identifier such as ``1.3.6.1.5.5.7.3.17`` (id-kp-ipsecIKE)."""
    text = value.strip()
    if not _OID_RE.match(text):
        raise ValueError("expected a dotted OID such as 1.3.6.1.5.5.7.3.17")
    return text
