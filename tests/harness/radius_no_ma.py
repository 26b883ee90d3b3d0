"""A hostile (or pre-BlastRADIUS) RADIUS server for tests: answers every Access-Request with an
Access-Accept that has a correct Response Authenticator (RFC 2865 §3) but no Message-Authenticator.

Run in a test's namespace: ``python -m tests.harness.radius_no_ma ADDRESS PORT SECRET_FILE``; it prints
"ready" and serves until it is stopped (by the PID the test started). No real server omits the attribute
for EAP, so this stands in for the forged or downgraded reply the gateway must refuse.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import sys


def main(argv: list[str]) -> int:
    address, port, secret_file = argv[0], int(argv[1]), argv[2]
    with open(secret_file, "rb") as fh:
        secret = fh.read().strip()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        if len(data) < 20 or data[0] != 1:
            continue
        head = struct.pack("!BBH", 2, data[1], 20)
        authenticator = hashlib.md5(head + data[4:20] + secret).digest()
        sock.sendto(head + authenticator, peer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
