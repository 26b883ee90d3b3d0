"""IKEv1 probes: does the responder still speak IKEv1 (Main Mode), and Aggressive Mode with a PSK?

RFC 9395 §3 deprecates IKEv1 and NIST SP 800-77r1 §3.11 says not to use it; Aggressive Mode with a pre-shared
key is worse: the responder's first answer carries HASH_R, computed from the PSK over values the initiator
sees, so anyone who can reach UDP 500 can try to recover the PSK offline (RFC 2409 §5.4; what `ike-scan
--aggressive` + `psk-crack` do). ikeguard's ``wire`` package is an IKEv2 codec (it refuses major version 1),
so this module carries the few ISAKMP structures a probe needs (RFC 2408 §3.1-§3.6, RFC 2409 Appendix A):
the header, an SA payload with one proposal of transforms, KE, Nonce, ID; answers are walked payload by
payload, at most :data:`MAX_PAYLOADS`, with lengths checked, and never trusted further than "what type is it".
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
from dataclasses import dataclass, field

from ikeguard.scan.keyex import public_value

_HEADER = struct.Struct("!8s8sBBBBII")
_GENERIC = struct.Struct("!BBH")
_ATTR = struct.Struct("!HH")
HEADER_LEN = 28
MAX_PAYLOADS = 32
VERSION_1 = 0x10

# RFC 2408 §3.1 / RFC 2409: payload and exchange types
PT_SA, PT_PROPOSAL, PT_TRANSFORM, PT_KE, PT_ID = 1, 2, 3, 4, 5
PT_HASH, PT_NONCE, PT_NOTIFY, PT_VID = 8, 10, 11, 13
EXCH_MAIN, EXCH_AGGRESSIVE, EXCH_INFO = 2, 4, 5
NO_PROPOSAL_CHOSEN = 14

# RFC 2409 Appendix A attribute classes and values
A_ENCR, A_HASH, A_AUTH, A_GROUP, A_LIFE_TYPE, A_LIFE, A_KEYLEN = 1, 2, 3, 4, 11, 12, 14
ENCR = {"AES-256": (7, 256), "AES-128": (7, 128), "3DES": (5, None), "DES": (1, None)}
HASH = {"SHA2-256": 4, "SHA1": 2, "MD5": 1}
AUTH = {"PSK": 1, "RSA": 3}
GROUPS = {"MODP-2048": 14, "MODP-1024": 2, "MODP-1536": 5}
_KE_ID = {14: 14, 2: 2, 5: 5}  # IKEv1 groups 1-18 share the IKEv2 numbers


@dataclass
class Ikev1Result:
    """What the IKEv1 probes saw."""

    main_mode: str = "not probed"
    """``accepted`` (a Main Mode SA answer), ``refused`` (an IKEv1 error answer), ``no answer``."""
    main_mode_choice: str | None = None
    aggressive_psk: str = "not probed"
    """``accepted`` (HASH_R sent: offline PSK cracking possible), ``refused``, ``no answer``."""
    aggressive_choice: str | None = None
    notes: list[str] = field(default_factory=list)
    probes: int = 0
    datagrams: int = 0
    half_open: int = 0

    @property
    def answers(self) -> bool:
        """IKEv1 answered at all (accepted or refused: the daemon speaks IKEv1)."""
        return "accepted" in (self.main_mode, self.aggressive_psk) or "refused" in (
            self.main_mode, self.aggressive_psk)


def _payload(next_type: int, body: bytes) -> bytes:
    return _GENERIC.pack(next_type, 0, 4 + len(body)) + body


def _transform(number: int, last: bool, encr: str, hash_: str, auth: str, group: int) -> bytes:
    encr_id, keylen = ENCR[encr]
    attrs = [(A_ENCR, encr_id), (A_HASH, HASH[hash_]), (A_AUTH, AUTH[auth]), (A_GROUP, group),
             (A_LIFE_TYPE, 1), (A_LIFE, 28800)]
    if keylen:
        attrs.append((A_KEYLEN, keylen))
    body = struct.pack("!BBH", number, 1, 0) + b"".join(_ATTR.pack(0x8000 | t, v) for t, v in attrs)
    return _payload(0 if last else PT_TRANSFORM, body)


def _sa(next_type: int, suites: list[tuple[str, str, str, int]]) -> bytes:
    transforms = b"".join(_transform(i + 1, i == len(suites) - 1, *s) for i, s in enumerate(suites))
    proposal = _payload(0, struct.pack("!BBBB", 1, 1, 0, len(suites)) + transforms)
    return _payload(next_type, struct.pack("!II", 1, 1) + proposal)  # DOI IPsec, SIT_IDENTITY_ONLY


def _message(exchange: int, first: int, body: bytes, icookie: bytes) -> bytes:
    return _HEADER.pack(icookie, bytes(8), first, VERSION_1, exchange, 0, 0, HEADER_LEN + len(body)) + body


def _walk(data: bytes, icookie: bytes) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(exchange type, [(payload type, body)]) of an ISAKMP answer to ``icookie``; None if it is not one."""
    if len(data) < HEADER_LEN:
        return None
    cookie, _r, first, version, exchange, _flags, _mid, length = _HEADER.unpack_from(data)
    if cookie != icookie or version >> 4 != 1 or length != len(data):
        return None
    out: list[tuple[int, bytes]] = []
    pos, ptype = HEADER_LEN, first
    while ptype and len(out) < MAX_PAYLOADS:
        if pos + 4 > len(data):
            return None
        nxt, _res, plen = _GENERIC.unpack_from(data, pos)
        if plen < 4 or pos + plen > len(data):
            return None
        out.append((ptype, data[pos + 4:pos + plen]))
        pos, ptype = pos + plen, nxt
    return exchange, out


def _chosen(sa_body: bytes) -> str | None:
    """The first transform's suite in an SA answer, e.g. ``AES-256/SHA2-256/PSK/MODP-2048``."""
    try:
        _n, _p, spi_size, _count = struct.unpack_from("!BBBB", sa_body, 12)  # after DOI, SIT, generic header
        transform = sa_body[16 + spi_size:]
        _nx, _r, tlen = _GENERIC.unpack_from(transform, 0)
        attrs = transform[8:tlen]  # transform number, ID, 2 reserved octets, then the attributes
    except struct.error:
        return None
    values: dict[int, int] = {}
    for i in range(0, len(attrs) - 3, 4):
        t, v = _ATTR.unpack_from(attrs, i)
        if t & 0x8000:
            values[t & 0x7FFF] = v
    encr = next((n for n, (e, k) in ENCR.items() if e == values.get(A_ENCR) and k == values.get(A_KEYLEN)),
                f"ENCR{values.get(A_ENCR)}")
    hash_ = next((n for n, h in HASH.items() if h == values.get(A_HASH)), f"HASH{values.get(A_HASH)}")
    auth = next((n for n, a in AUTH.items() if a == values.get(A_AUTH)), f"AUTH{values.get(A_AUTH)}")
    group = next((n for n, g in GROUPS.items() if g == values.get(A_GROUP)), f"GROUP{values.get(A_GROUP)}")
    return f"{encr}/{hash_}/{auth}/{group}"


class Ikev1Prober:
    """Main Mode and Aggressive Mode probes to ``address`` (UDP 500), ``timeout`` seconds each, sent twice."""

    def __init__(self, address: tuple[str, int], timeout: float, identity: str | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.identity = identity
        self.result = Ikev1Result()

    def _exchange(self, datagram: bytes, icookie: bytes) -> tuple[int, list[tuple[int, bytes]]] | str:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        self.result.probes += 1
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            for _attempt in range(2):
                try:
                    sock.send(datagram)
                except OSError:
                    return "unreachable"
                self.result.datagrams += 1
                sock.settimeout(self.timeout)
                while True:
                    try:
                        data = sock.recv(65535)
                    except TimeoutError:
                        break
                    except OSError:
                        return "unreachable"
                    walked = _walk(data, icookie)
                    if walked is not None:
                        return walked
        return "no answer"

    @staticmethod
    def _verdict(answer: tuple[int, list[tuple[int, bytes]]] | str, exchange: int) -> tuple[str, str | None]:
        if isinstance(answer, str):
            return "no answer", None
        kind, payloads = answer
        types = [t for t, _ in payloads]
        if kind == exchange and PT_SA in types:
            return "accepted", _chosen(next(b for t, b in payloads if t == PT_SA))
        return "refused", None

    def main_mode(self) -> None:
        """RFC 2409 §5 first message, once per authentication method (libreswan looks for a connection that
        allows every method a single offer contains): every suite of ENCR x HASH x GROUPS."""
        for auth in AUTH:
            suites = [(e, h, auth, g) for e, h, g in itertools.product(ENCR, HASH, GROUPS.values())]
            icookie = os.urandom(8)
            answer = self._exchange(_message(EXCH_MAIN, PT_SA, _sa(0, suites), icookie), icookie)
            verdict, choice = self._verdict(answer, EXCH_MAIN)
            if verdict == "accepted":
                self.result.main_mode, self.result.main_mode_choice = verdict, choice
                self.result.half_open += 1
                return
            if verdict == "refused" or self.result.main_mode == "not probed":
                self.result.main_mode = verdict

    def aggressive_psk(self) -> None:
        """RFC 2409 §5.4 first message with PSK authentication: SA, KE, Ni, IDii (one group per probe, as
        the KE payload fixes it)."""
        local = self._local_address()
        for group in GROUPS.values():
            data = public_value(_KE_ID[group])
            if data is None:
                continue
            suites = [(e, h, "PSK", group) for e, h in itertools.product(ENCR, HASH)]
            if self.identity:
                ident = struct.pack("!BBH", 2, 17, 500) + self.identity.encode()  # ID_FQDN
            else:
                ip = ipaddress.ip_address(local)
                ident = struct.pack("!BBH", 1 if ip.version == 4 else 5, 17, 500) + ip.packed
            body = (_sa(PT_KE, suites) + _payload(PT_NONCE, data) + _payload(PT_ID, os.urandom(32))
                    + _payload(0, ident))
            icookie = os.urandom(8)
            answer = self._exchange(_message(EXCH_AGGRESSIVE, PT_SA, body, icookie), icookie)
            verdict, choice = self._verdict(answer, EXCH_AGGRESSIVE)
            if verdict == "accepted":
                self.result.aggressive_psk, self.result.aggressive_choice = verdict, choice
                self.result.half_open += 1
                return
            if verdict == "refused" or self.result.aggressive_psk == "not probed":
                self.result.aggressive_psk = verdict
            if verdict == "no answer" and self.result.main_mode == "no answer":
                return  # nothing speaks IKEv1 here: the other groups would only cost timeouts

    def _local_address(self) -> str:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            return str(sock.getsockname()[0])

    def run(self) -> Ikev1Result:
        """Main Mode, then Aggressive Mode with PSK."""
        self.main_mode()
        self.aggressive_psk()
        return self.result
