"""keepalived's ``notify`` hook for an HA node (docs/ha.md), light enough to start in tens of milliseconds:
only the standard library, no CLI stack (``ikeguard ha role`` takes about a second to start on a loaded
machine, and that second is traffic lost in a failover).

keepalived runs ``notify`` scripts with ``TYPE NAME STATE PRIORITY`` appended::

    notify "/usr/bin/python3 -m ikeguard.control.ha_notify --socket /var/lib/ikeguard/control.sock"

With ``--check`` it is keepalived's track script instead: exit 1 when the node says it is not healthy (made
MASTER but unable to hold the etcd lease, docs/ha.md "Split brain"), so keepalived gives the address up::

    vrrp_script ikeguard_lease {
        script "/usr/bin/python3 -m ikeguard.control.ha_notify --socket /run/ikeguard.sock --check"
        interval 1
    }

The request is the control socket's ``ha`` command (``{"id", "cmd", "args"}`` JSON lines, see
:mod:`ikeguard.control.client`). Exit status as ``ikeguard ha role``: 0 set, 1 refused (MASTER with state
too old, HA not enabled), 2 no gateway.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    """Send the role; print the gateway's answer (one JSON line)."""
    parser = argparse.ArgumentParser(prog="ikeguard.control.ha_notify")
    parser.add_argument("--socket", required=True, help="the gateway's control socket")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--check", action="store_true", help="track script: exit 1 when not healthy")
    parser.add_argument("words", nargs="*", help="keepalived's TYPE NAME STATE [PRIORITY], or just STATE")
    args = parser.parse_args(argv)
    if not args.words and not args.check:
        parser.error("a STATE (or --check) is needed")
    state = "" if args.check else (args.words[2] if len(args.words) >= 3 else args.words[0]).lower()
    request = {"id": 1, "cmd": "ha", "args": {"action": "status"} if args.check
               else {"action": "role", "role": state}}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(args.timeout)
            sock.connect(args.socket)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        print(f"ha_notify: no gateway at {args.socket}: {exc}", file=sys.stderr)
        return 2
    print(data.decode(errors="replace").strip())
    try:
        answer = json.loads(data)
    except ValueError:
        return 2
    if not answer.get("ok"):
        return 1
    result = answer.get("result") or {}
    if args.check:
        return 1 if result.get("healthy") is False else 0
    return 1 if state in ("master", "active") and result.get("role") != "active" else 0


if __name__ == "__main__":
    sys.exit(main())
