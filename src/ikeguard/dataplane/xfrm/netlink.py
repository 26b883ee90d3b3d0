"""A NETLINK_XFRM socket: requests with ACK/extended-ACK errors, dumps, and multicast subscription.

Hand-written over :mod:`socket` because pyroute2 (0.9.x) has no XFRM family; the framing is the plain
netlink one (``<linux/netlink.h>``). ``netns`` opens the socket inside a named network namespace
(``/run/netns/NAME``) from a short-lived thread that joins it with ``setns(2)``: a netlink socket stays in
the namespace it was created in, so the rest of the process need not move.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from ikeguard.dataplane.xfrm.structs import (
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_XFRM,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGERR_ATTR_MSG,
    SOL_NETLINK,
    nlmsg,
    parse_attrs,
    split_nlmsgs,
)

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
RECV_BUFFER = 1 << 16
T = TypeVar("T")


class XfrmError(OSError):
    """The kernel refused an XFRM request: ``errno`` plus the kernel's extended-ACK text when it gave one."""

    def __init__(self, err: int, request: str, kernel_message: str = "") -> None:
        self.request = request
        self.kernel_message = kernel_message
        text = f"{request}: {os.strerror(err)} ({errno.errorcode.get(err, err)})"
        if kernel_message:
            text += f": {kernel_message}"
        super().__init__(err, text)

    def __str__(self) -> str:
        return str(self.args[1])


def run_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` in a short-lived thread that joined network namespace ``netns`` (``setns(2)``); sockets
    it creates stay in that namespace. Exceptions propagate to the caller."""
    result: list[T] = []
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into network namespace {netns!r}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=worker, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _open_in_netns(netns: str | None, groups: int) -> socket.socket:
    """Create the netlink socket (in ``netns`` when given)."""
    if netns is None:
        return _new_socket(groups)
    return run_in_netns(netns, lambda: _new_socket(groups))


def _new_socket(groups: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_XFRM)
    try:
        with contextlib.suppress(OSError):  # kernels without extended ACK still answer with errno
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        with contextlib.suppress(OSError):  # errors echo only our header, not the keys we sent
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.bind((0, groups))
    except BaseException:
        sock.close()
        raise
    return sock


def _ack_error(payload: bytes, flags: int) -> tuple[int, str]:
    """errno (positive, 0 = success) and extended-ACK message of an NLMSG_ERROR payload."""
    err = -struct.unpack_from("=i", payload)[0]
    message = ""
    if flags & NLM_F_ACK_TLVS:
        echoed_len = struct.unpack_from("=I", payload, 4)[0] if len(payload) >= 8 else 16
        skip = 4 + (16 if flags & NLM_F_CAPPED else (echoed_len + 3) & ~3)
        with contextlib.suppress(ValueError):
            for kind, value in parse_attrs(payload[skip:]):
                if kind == NLMSGERR_ATTR_MSG:
                    message = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    return err, message


class XfrmSocket:
    """Request/response access to the kernel's XFRM configuration (one request at a time)."""

    def __init__(self, netns: str | None = None, groups: int = 0) -> None:
        self.netns = netns
        self.sock = _open_in_netns(netns, groups)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.overruns = 0  # ENOBUFS on the notification socket: notifications lost

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def fileno(self) -> int:
        """For event loops."""
        return self.sock.fileno()

    def request(self, msg_type: int, payload: bytes, flags: int = 0, what: str = "") -> list[bytes]:
        """Send one request with NLM_F_ACK; return the payloads of the reply messages before the ACK
        (for GET and ALLOCSPI) or raise :class:`XfrmError`."""
        with self._lock:
            seq = next(self._seq)
            data = nlmsg(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, seq, payload)
            self.sock.send(data)
            replies: list[bytes] = []
            while True:
                for kind, mflags, mseq, body in split_nlmsgs(self.sock.recv(RECV_BUFFER)):
                    if mseq != seq:
                        continue  # a late answer to an earlier, abandoned request
                    if kind == NLMSG_ERROR:
                        err, message = _ack_error(body, mflags)
                        if err:
                            raise XfrmError(err, what or f"XFRM request {msg_type}", message)
                        return replies
                    if kind == NLMSG_DONE:
                        return replies
                    replies.append(body)

    def dump(self, msg_type: int, payload: bytes = b"") -> list[bytes]:
        """A dump request (GETSA/GETPOLICY with NLM_F_DUMP): all payloads until NLMSG_DONE."""
        with self._lock:
            seq = next(self._seq)
            self.sock.send(nlmsg(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, payload))
            replies: list[bytes] = []
            while True:
                for kind, mflags, mseq, body in split_nlmsgs(self.sock.recv(RECV_BUFFER)):
                    if mseq != seq:
                        continue
                    if kind == NLMSG_DONE:
                        return replies
                    if kind == NLMSG_ERROR:
                        err, message = _ack_error(body, mflags)
                        if err:
                            raise XfrmError(err, f"XFRM dump {msg_type}", message)
                        return replies
                    replies.append(body)

    def read_events(self) -> list[tuple[int, bytes]]:
        """Drain multicast notifications waiting on the socket: (message type, payload) pairs."""
        out: list[tuple[int, bytes]] = []
        while True:
            try:
                data = self.sock.recv(RECV_BUFFER, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1  # the kernel dropped notifications for us; later ones still come
                continue
            out.extend((kind, body) for kind, _f, _s, body in split_nlmsgs(data))
