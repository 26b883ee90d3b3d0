"""Traffic tools for data-plane interop tests, run in a namespace: ``python -m tests.harness.traffic CMD``.

Each server prints ``listening`` once bound, then one JSON line with its result; each sender prints one JSON
line. Payloads are pseudo-random (seeded) so both ends can hash what they saw.

tcp-serve ADDR PORT                  accept one connection; {"bytes", "sha256"} of everything received
tcp-send SRC HOST PORT SIZE [MBIT]   send SIZE bytes from SRC (paced to MBIT Mbit/s); {"bytes", "sha256"}
udp-serve ADDR PORT SECS             numbered datagrams until the sender's end marker (or SECS):
                                     {"received", "distinct", "duplicates", "missing": [[first, last], ...]}
udp-send SRC HOST PORT COUNT GAP_MS  COUNT numbered datagrams (4-octet sequence number + 96 octets), then an
                                     end marker; {"sent"}
udp-raw HOST PORT FILE               each hex line of FILE as one datagram from an ephemeral port
esp-raw HOST FILE                    each hex line of FILE as one IP protocol 50 (ESP) packet to HOST
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ikeguard.tools.netns import Namespace, stop_process

END_MARKER = 0xFFFFFFFF
CHUNK = 1 << 16


def data_chunks(size: int, seed: int = 7) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in chunks (the same for the same seed)."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _ranges(missing: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for n in missing:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def tcp_serve(addr: str, port: int) -> dict[str, object]:
    srv = socket.socket(_family(addr), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    h, n = hashlib.sha256(), 0
    while chunk := conn.recv(CHUNK):
        h.update(chunk)
        n += len(chunk)
    conn.sendall(b"k")  # the sender waits for this: everything arrived
    conn.close()
    return {"bytes": n, "sha256": h.hexdigest()}


def tcp_send(src: str, host: str, port: int, size: int, mbit: float = 0.0) -> dict[str, object]:
    h = hashlib.sha256()
    start, done = time.monotonic(), 0
    with socket.create_connection((host, port), timeout=120, source_address=(src, 0)) as s:
        for chunk in data_chunks(size):
            h.update(chunk)
            s.sendall(chunk)
            done += len(chunk)
            if mbit:  # paced: the transfer lasts size * 8 / mbit microseconds
                delay = start + done * 8 / (mbit * 1e6) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    return {"bytes": size, "sha256": h.hexdigest(), "seconds": round(time.monotonic() - start, 3)}


def udp_serve(addr: str, port: int, secs: float) -> dict[str, object]:
    s = socket.socket(_family(addr), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((addr, port))
    print("listening", flush=True)
    seen: set[int] = set()
    received, total, deadline = 0, None, time.monotonic() + secs
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = s.recv(2048)
        except TimeoutError:
            if total is not None:
                break  # end marker seen and the stream has gone quiet
            continue
        seq = struct.unpack_from("!I", data)[0]
        if seq == END_MARKER:
            total = struct.unpack_from("!I", data, 4)[0]
            continue
        received += 1
        seen.add(seq)
    expected = total if total is not None else (max(seen) + 1 if seen else 0)
    missing = [i for i in range(expected) if i not in seen]
    return {"received": received, "distinct": len(seen), "duplicates": received - len(seen),
            "expected": expected, "end_marker": total is not None, "missing": _ranges(missing)}


def udp_send(src: str, host: str, port: int, count: int, gap_ms: float) -> dict[str, object]:
    s = socket.socket(_family(host), socket.SOCK_DGRAM)
    s.bind((src, 0))
    gap = gap_ms / 1000
    start = time.monotonic()
    for i in range(count):
        s.sendto(struct.pack("!I", i) + bytes(96), (host, port))
        delay = start + (i + 1) * gap - time.monotonic()  # a steady rate, not drifting with sleep overshoot
        if delay > 0:
            time.sleep(delay)
    for _ in range(3):  # the end marker carries the count (sent thrice: it may itself be lost)
        s.sendto(struct.pack("!II", END_MARKER, count), (host, port))
        time.sleep(0.05)
    return {"sent": count, "seconds": round(time.monotonic() - start, 3)}


def udp_raw(host: str, port: int, path: str) -> dict[str, object]:
    s = socket.socket(_family(host), socket.SOCK_DGRAM)
    n = 0
    for line in Path(path).read_text().splitlines():
        if line.strip():
            s.sendto(bytes.fromhex(line.strip()), (host, port))
            n += 1
            time.sleep(0.01)
    return {"sent": n}


# --- the test side: start the tools above inside a namespace -------------------------------------------
REPO = Path(__file__).resolve().parents[2]


def start_tool(ns: Namespace, *args: str) -> subprocess.Popen[str]:
    """Run one command of this module inside ``ns`` (stdout piped); servers are returned once listening."""
    proc = ns.popen([sys.executable, "-m", "tests.harness.traffic", *args], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, cwd=REPO)
    if args[0].endswith("-serve"):
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "listening":
            _, err = proc.communicate(timeout=5)
            raise AssertionError(f"{args[0]} did not start: {line!r} {err}")
    return proc


def result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """The JSON line a tool printed (raises with its stderr when it failed)."""
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.strip() and line.strip() != "listening"]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"traffic tool exited {proc.returncode}: {out!r} {err}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def tcp_transfer(server_ns: Namespace, server_addr: str, client_ns: Namespace, client_src: str, size: int,
                 port: int = 5001) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send ``size`` random bytes over TCP; (what the sender sent, what the receiver got)."""
    server = start_tool(server_ns, "tcp-serve", server_addr, str(port))
    client = start_tool(client_ns, "tcp-send", client_src, server_addr, str(port), str(size))
    sent = result(client, 180)
    return sent, result(server, 30)


class Capture:
    """tcpdump on one interface of a namespace, into a pcap file parsed with :func:`read_pcap`."""

    def __init__(self, ns: Namespace, ifname: str, bpf: str, path: Path) -> None:
        self.path = path
        self.proc = ns.popen(["tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-w", str(path), bpf],
                             stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "listening" in line, line

    def stop(self) -> list[bytes]:
        """Stop tcpdump (by its PID) and return the captured link-layer frames."""
        time.sleep(0.3)
        stop_process(self.proc)
        return read_pcap(self.path)


def read_pcap(path: Path) -> list[bytes]:
    """Frames of a classic pcap file."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    frames, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def link_type(path: Path) -> int:
    """The pcap file's link type (1 Ethernet, 101/12 raw IP for a TUN device)."""
    data = path.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return int(struct.unpack_from(endian + "I", data, 20)[0])


def esp_payloads(frames: list[bytes]) -> list[bytes]:
    """ESP packets (from the SPI on) of IPv4-over-Ethernet frames: ESP in UDP (RFC 3948, not IKE with its
    non-ESP marker) or IP protocol 50."""
    out = []
    for f in frames:
        if len(f) < 42 or f[12:14] != b"\x08\x00":
            continue
        ihl = (f[14] & 0x0F) * 4
        if f[23] == 50:
            out.append(f[14 + ihl :])
        elif f[23] == 17 and f[14 + ihl + 8 : 14 + ihl + 12] != b"\x00\x00\x00\x00":
            out.append(f[14 + ihl + 8 :])
    return out


def udp_payloads(frames: list[bytes]) -> list[bytes]:
    """UDP payloads of IPv4-over-Ethernet frames."""
    out = []
    for f in frames:
        if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        ihl = (f[14] & 0x0F) * 4
        out.append(f[14 + ihl + 8 :])
    return out


def esp_raw(host: str, path: str) -> dict[str, object]:
    s = socket.socket(_family(host), socket.SOCK_RAW, 50)
    n = 0
    for line in Path(path).read_text().splitlines():
        if line.strip():
            s.sendto(bytes.fromhex(line.strip()), (host, 0))
            n += 1
            time.sleep(0.01)
    return {"sent": n}


COMMANDS: dict[str, tuple[int, Callable[..., dict[str, object]], tuple[Callable[[str], object], ...]]] = {
    "tcp-serve": (2, tcp_serve, (str, int)),
    "tcp-send": (4, tcp_send, (str, str, int, int, float)),
    "udp-serve": (3, udp_serve, (str, int, float)),
    "udp-send": (5, udp_send, (str, str, int, int, float)),
    "udp-raw": (3, udp_raw, (str, int, str)),
    "esp-raw": (2, esp_raw, (str, str)),
}


def main(argv: list[str]) -> int:
    """Run one command; prints its JSON result."""
    if not argv or argv[0] not in COMMANDS or len(argv) - 1 not in (COMMANDS[argv[0]][0],
                                                                       len(COMMANDS[argv[0]][2])):
        print(__doc__, file=sys.stderr)
        return 2
    _, func, types = COMMANDS[argv[0]]
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(func(*(t(a) for t, a in zip(types, argv[1:], strict=False)))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
