"""Kernel steering of IKE datagrams to the worker that owns the IKE SA (issue 22, ``[gateway] workers``).

N worker processes share one UDP port 500 and one 4500 through ``SO_REUSEPORT`` groups; a classic-BPF program
attached to each group with ``SO_ATTACH_REUSEPORT_CBPF`` returns, for every datagram, the index of the socket
(in the order the sockets joined the group) that receives it:

* an IKE message (RFC 7296 §3.1; on 4500 after the four-octet non-ESP marker, RFC 3948 §2.2) goes to the
  worker named by the first octet of *our* SPI: the responder SPI when the Initiator flag is set (the peer is
  the original initiator, we answer), the initiator SPI when it is clear (we started the SA). The engine puts
  the worker id there (``EngineContext.worker_id``). Port floating (500 -> 4500, RFC 7296 §2.23) and MOBIKE
  address changes (RFC 4555) keep the SPIs, so they keep the worker.
* an IKE_SA_INIT request (responder SPI zero), a NAT keepalive or anything too short to parse is spread by the
  peer's source address (folded and taken modulo N): retransmissions, the retry with a COOKIE and the retry
  after INVALID_KE_PAYLOAD come from the same address and reach the same worker.
* ESP in UDP on 4500 (a non-zero first word, RFC 3948 §2.1) goes to ``esp_index`` (the data plane's socket,
  which joins the group after the workers' sockets), or is spread by source like keepalives when the kernel
  decapsulates it on every socket (``UDP_ENCAP_ESPINUDP`` with the xfrm data plane).

With ``priority`` (what ``[gateway] workers`` uses) every worker has two sockets in the group, a priority one
(index ``i``) and a bulk one (index ``N + i``), and only a new IKE_SA_INIT request that offers no COOKIE goes
to a bulk socket: its first payload is not a COOKIE notify (RFC 7296 §2.6 puts the COOKIE first, so its type
sits at a fixed offset: octet 16 = 41, octets 34-35 = 16390). Everything else of IKE — the retry with the
cookie, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, responses to our requests — reaches the priority socket,
which the worker drains first (service/sockets.py). A flood of spoofed IKE_SA_INIT requests then fills only
the bulk sockets' buffers: it competes with other peers' first requests, never with an IKE_AUTH or a cookie
retry (issue 22). NAT keepalives, runts and SPIs naming no worker go to the bulk sockets as well; ESP in UDP
to ``esp_index`` (after both halves) or spread over the bulk sockets.

A group is only made on a free port: :func:`open_group` first binds the port without ``SO_REUSEPORT`` and
closes that socket again, so a second gateway on the same address and port fails with "address in use" (the
rule of service/sockets.py) instead of joining the group of the first one.

The supervisor creates every socket of a group and keeps them all open for its lifetime, so a worker that dies
does not shift the others' indices (the kernel compacts a group when a member closes) and its restarted
successor inherits the same socket, with the datagrams that queued meanwhile.

Hand-written because no maintained Python package builds classic-BPF programs or wraps
``SO_ATTACH_REUSEPORT_CBPF`` (the socket module has the constant's neighbours but not ``struct sock_fprog``):
the program is 30-odd instructions assembled here and attached with ctypes.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ikeguard.service.sockets import open_udp

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h
SKF_NET_OFF = -0x100000  # linux/filter.h: offsets from the network header
MAX_WORKERS = 64

# classic BPF opcodes (linux/bpf_common.h, linux/filter.h)
_LD_W_ABS, _LD_B_ABS, _LD_W_LEN = 0x20, 0x30, 0x80
_TAX = 0x07  # BPF_MISC | BPF_TAX: X = A
_LD_H_ABS = 0x28
_ALU_ADD_K, _ALU_RSH_K, _ALU_XOR_X, _ALU_MOD_K = 0x04, 0x74, 0xAC, 0x94
_JEQ_K, _JGE_K, _JSET_K, _JA = 0x15, 0x35, 0x45, 0x05
_RET_K, _RET_A = 0x06, 0x16

IKE_HEADER = 28
NOTIFY, COOKIE = 41, 16390  # RFC 7296 §3.2 payload type, §3.10.1 notify type


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


@dataclass(frozen=True)
class Insn:
    """One classic-BPF instruction; ``jt``/``jf``/``ja`` may name a label resolved by :func:`assemble`."""

    code: int
    k: int = 0
    jt: int | str = 0
    jf: int | str = 0


Program = list[Insn | str]  # a str alone is a label for the next instruction


def assemble(program: Program) -> list[tuple[int, int, int, int]]:
    """Resolve labels into relative jumps: ``(code, jt, jf, k)`` per instruction."""
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def rel(target: int | str, at: int) -> int:
        if isinstance(target, int):
            return target
        offset = labels[target] - at - 1
        if offset < 0:
            raise ValueError(f"backward jump to {target!r}")
        return offset

    out = []
    for at, insn in enumerate(insns):
        if insn.code == _JA:
            out.append((insn.code, 0, 0, rel(insn.jt, at)))
        else:
            out.append((insn.code, rel(insn.jt, at), rel(insn.jf, at), insn.k & 0xFFFFFFFF))
    if any(jt > 255 or jf > 255 for _code, jt, jf, _k in out):
        raise ValueError("conditional jump too far")
    return out


def _spread(family: int, workers: int, label: str = "spread", base: int = 0) -> Program:
    """A = the source address folded to 32 bits, modulo ``workers``, plus ``base``; return it."""
    # IPv4: saddr at network header + 12; IPv6: the last word of saddr at + 20 (fixed 40-octet header)
    offset = 12 if family == socket.AF_INET else 20
    prog: Program = [label,
                     Insn(_LD_W_ABS, SKF_NET_OFF + offset),
                     Insn(_TAX), Insn(_ALU_RSH_K, 16), Insn(_ALU_XOR_X),
                     Insn(_TAX), Insn(_ALU_RSH_K, 8), Insn(_ALU_XOR_X),
                     Insn(_ALU_MOD_K, workers)]
    if base:
        prog.append(Insn(_ALU_ADD_K, base))
    return [*prog, Insn(_RET_A)]


def steering_program(family: int, workers: int, *, natt: bool, esp_index: int | None = None,
                     priority: bool = False, esp_count: int = 1) -> Program:
    """The program for one group (module docstring): ``natt`` = port 4500 with the non-ESP marker;
    ``priority``: two sockets per worker, cookie-less IKE_SA_INIT requests to the second half; ``esp_count``
    data-plane sockets from ``esp_index`` on: ESP to ``esp_index + SPI mod esp_count`` (the data-plane worker
    holding the inbound SA, dataplane/userspace/steering.py)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1..{MAX_WORKERS}")
    m = 4 if natt else 0
    bulk = "bulk" if priority else "spread"  # new requests without a cookie, keepalives, runts, strangers
    prog: Program = []
    if natt:
        esp: Program = [Insn(_RET_K, esp_index) if esp_index is not None else Insn(_JA, jt=bulk)]
        if esp_index is not None and esp_count > 1:  # A holds the SPI
            esp = [Insn(_ALU_MOD_K, esp_count), Insn(_ALU_ADD_K, esp_index), Insn(_RET_A)]
        prog += [Insn(_LD_W_LEN), Insn(_JGE_K, 8, jt=0, jf=bulk),  # keepalive (1 octet), runts
                 Insn(_LD_W_ABS, 0), Insn(_JEQ_K, 0, jt="ike", jf="esp"),
                 "esp", *esp,
                 "ike"]
    # SPIr zero: a new IKE_SA_INIT request, spread by source; with ``priority`` to the bulk half unless its
    # first payload is a COOKIE notify (the retry, RFC 7296 §2.6)
    init: Program = [Insn(_JA, jt="spread")]
    if priority:
        init = [Insn(_LD_W_LEN), Insn(_JGE_K, m + IKE_HEADER + 8, jt=0, jf="bulk"),
                Insn(_LD_B_ABS, m + 16), Insn(_JEQ_K, NOTIFY, jt=0, jf="bulk"),
                Insn(_LD_H_ABS, m + IKE_HEADER + 6), Insn(_JEQ_K, COOKIE, jt="spread", jf="bulk")]
    prog += [Insn(_LD_W_LEN), Insn(_JGE_K, m + IKE_HEADER, jt=0, jf=bulk),
             Insn(_LD_B_ABS, m + 19), Insn(_JSET_K, 0x08, jt="responder", jf=0),
             Insn(_LD_B_ABS, m + 0), Insn(_JA, jt="check"),  # we are the original initiator: SPIi is ours
             "responder",
             Insn(_LD_W_ABS, m + 8), Insn(_JEQ_K, 0, jt=0, jf="ours"),
             Insn(_LD_W_ABS, m + 12), Insn(_JEQ_K, 0, jt="init", jf=0),
             "ours",
             Insn(_LD_B_ABS, m + 8),
             "check",
             Insn(_JGE_K, workers, jt=bulk, jf=0), Insn(_RET_A),
             "init", *init]
    prog += _spread(family, workers)
    if priority:
        prog += _spread(family, workers, "bulk", workers)
    return prog


def attach(sock: socket.socket, program: Program) -> None:
    """``SO_ATTACH_REUSEPORT_CBPF``: the program decides for the whole group ``sock`` belongs to."""
    code = assemble(program)
    filters = (_SockFilter * len(code))(*[_SockFilter(c, jt, jf, k) for c, jt, jf, k in code])
    fprog = _SockFprog(len(code), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))  # copied by the kernel


def open_group(address: str, port: int, workers: int, *, natt: bool,
               esp_socket: bool = False, priority: bool = False, esp_sockets: int = 0) -> list[socket.socket]:
    """``workers`` sockets (``2 * workers`` with ``priority``: the priority ones, then the bulk ones; then the
    data plane's ESP sockets: 1 with ``esp_socket``, else ``esp_sockets``) on one address and port, in group
    order, the steering program attached. Port 0: the kernel picks one port for all of them."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    members = workers * (2 if priority else 1)
    esp_count = 1 if esp_socket else esp_sockets
    count = members + esp_count
    socks: list[socket.socket] = []
    if port:  # nobody may hold the port: a second gateway fails to bind instead of joining our group
        open_udp(ip, port).close()
    try:
        for _ in range(count):
            sock = open_udp(ip, port, reuseport=True)
            socks.append(sock)
            port = sock.getsockname()[1]
        attach(socks[0], steering_program(family, workers, natt=natt, priority=priority,
                                          esp_index=members if esp_count else None,
                                          esp_count=max(1, esp_count)))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def tag_spi(spi: bytes, worker: int) -> bytes:
    """``spi`` with its first octet naming ``worker`` (what ``EngineContext.ike_spi`` does)."""
    return struct.pack("B", worker) + spi[1:]


def worker_of(spis: Sequence[bytes], initiator_flag: bool) -> int:
    """The worker a message with (SPIi, SPIr) and this Initiator flag is steered to (for logs and tests)."""
    return (spis[1] if initiator_flag else spis[0])[0]


def spread_index(address: str, workers: int) -> int:
    """The worker the program spreads a datagram from ``address`` to (IKE_SA_INIT, keepalives): the same
    folding as :func:`_spread`, for logs and tests."""
    import ipaddress

    word = int.from_bytes(ipaddress.ip_address(address).packed[-4:], "big")
    word ^= word >> 16
    word ^= word >> 8
    return word % workers
