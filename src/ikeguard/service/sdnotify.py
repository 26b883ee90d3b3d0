"""systemd readiness notification (``sd_notify(3)``), written by hand: a single ``sendto`` of ``READY=1`` /
``STOPPING=1`` on an AF_UNIX datagram socket to ``$NOTIFY_SOCKET`` (no libsystemd binding for three words)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False when none listens or it failed."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # "@" = Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True
