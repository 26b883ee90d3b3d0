"""Kernel steering of inbound ESP-in-UDP to the data-plane worker that holds the inbound SA (issue 22).

N workers each own one socket of an ``SO_REUSEPORT`` group on the NAT-T port; a classic-BPF program attached
with ``SO_ATTACH_REUSEPORT_CBPF`` returns, per datagram, the index of the socket (order of joining the group)
that receives it. The program sees the UDP payload from offset 0:

* ESP (RFC 3948 §2.1: the first word is the SPI, never zero) goes to worker ``SPI mod N``; inbound SPIs are
  allocated so that this names the worker holding the SA (:func:`worker_of_spi`);
* IKE (the four-zero-octet non-ESP marker, RFC 3948 §2.2: SPI word 0), NAT keepalives (one octet, §2.3) and
  anything shorter than an ESP header go to worker 0.

Plain ESP (IP protocol 50, no UDP) is not steered: every raw socket would see every packet, so the workers
refuse SAs without UDP encapsulation (``workers`` > 1 needs ``encap``; not implemented).

Hand-written (as :mod:`ikeguard.service.reuseport`, which the data plane may not import: layers): no
maintained Python package assembles classic BPF or wraps ``struct sock_fprog``; the program is five
instructions, attached with ctypes.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h
MAX_WORKERS = 64

# classic BPF opcodes (linux/bpf_common.h, linux/filter.h)
_LD_W_ABS, _LD_W_LEN, _ALU_MOD_K, _JGE_K, _RET_K, _RET_A = 0x20, 0x80, 0x94, 0x35, 0x06, 0x16


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def esp_program(workers: int) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) per instruction: runts -> 0, else the first word (SPI; 0 for IKE) mod ``workers``."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1..{MAX_WORKERS}")
    return [(_LD_W_LEN, 0, 0, 0), (_JGE_K, 1, 0, 8), (_RET_K, 0, 0, 0),  # shorter than SPI+seq: worker 0
            (_LD_W_ABS, 0, 0, 0), (_ALU_MOD_K, 0, 0, workers), (_RET_A, 0, 0, 0)]


def worker_of_spi(spi: int, workers: int) -> int:
    """The worker the program steers inbound SPI ``spi`` to."""
    return spi % workers


def attach(sock: socket.socket, workers: int) -> None:
    """Attach the program to the group ``sock`` belongs to."""
    code = esp_program(workers)
    filters = (_SockFilter * len(code))(*[_SockFilter(c, jt, jf, k) for c, jt, jf, k in code])
    fprog = _SockFprog(len(code), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))  # copied by the kernel


def open_group(address: str, port: int, workers: int) -> list[socket.socket]:
    """``workers`` UDP sockets on ``address``:``port`` in group order, the program attached."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(workers):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address, port))
            port = sock.getsockname()[1]
        attach(socks[0], workers)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks
