"""Small traffic tools run inside test namespaces: ``python -m tests.dataplane.nettools CMD ...``.

tcp-serve PORT             accept one connection, print "<bytes> <sha256>" of everything received
tcp-send HOST PORT SIZE    send SIZE pseudo-random bytes (seed 7), print "<bytes> <sha256>"
udp-serve PORT COUNT SECS  print how many distinct sequence numbers of a udp-send stream arrived
udp-send HOST PORT COUNT GAP_MS
udp-raw HOST PORT FILE     send each hex line of FILE as one UDP datagram
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import struct
import sys
import time


def data_stream(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def main(argv: list[str]) -> int:
    cmd = argv[0]
    if cmd == "tcp-serve":
        srv = socket.create_server(("0.0.0.0", int(argv[1])))
        print("listening", flush=True)
        conn, _ = srv.accept()
        h, n = hashlib.sha256(), 0
        while chunk := conn.recv(1 << 16):
            h.update(chunk)
            n += len(chunk)
        print(n, h.hexdigest(), flush=True)
        return 0
    if cmd == "tcp-send":
        data = data_stream(int(argv[3]))
        with socket.create_connection((argv[1], int(argv[2])), timeout=60) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
        print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
        return 0
    if cmd == "udp-serve":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(argv[1])))
        print("listening", flush=True)
        count, deadline, seen = int(argv[2]), time.monotonic() + float(argv[3]), set()
        s.settimeout(0.2)
        while len(seen) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                seen.add(struct.unpack_from("!I", s.recv(2048))[0])
        print(len(seen), flush=True)
        return 0
    if cmd == "udp-send":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        gap = float(argv[4]) / 1000
        for i in range(int(argv[3])):
            s.sendto(struct.pack("!I", i) + bytes(100), (argv[1], int(argv[2])))
            time.sleep(gap)
        return 0
    if cmd == "udp-raw":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with open(argv[3]) as f:
            for line in f:
                if line.strip():
                    s.sendto(bytes.fromhex(line.strip()), (argv[1], int(argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
