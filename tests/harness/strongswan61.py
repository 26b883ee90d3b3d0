"""A strongSwan 6.1 peer (ML-KEM, IKE_INTERMEDIATE, RFC 9370) for interop tests, from a debootstrap chroot.

Debian 13's strongSwan 6.0.1 has no ML-KEM; 6.1 from Debian unstable with OpenSSL >= 3.5 does. It is installed
into a Debian 13 chroot by scripts/build-strongswan61.sh (cached under /var/cache/ikeguard-tests, built on
first use under a lock). The chroot's charon-systemd runs inside the test's network namespace with
kernel-libipsec, like the 5.9.8 peer in strongswan.py (which this class reuses for configuration, vici and
waits); its own swanctl loads the configuration.

So that every path means the same inside and outside the chroot, charon and swanctl run under
``unshare -m`` (a private mount namespace, gone with the process) with the host's /tmp, /dev and the peer's
workdir bind-mounted at the same paths inside the chroot, and a fresh /proc. ``unshare``, ``sh -c exec`` and
``chroot`` all exec in place, so the PID the harness stops is charon's own.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.harness.strongswan import StrongSwanError, StrongSwanPeer

__all__ = ["BUILD_SCRIPT", "StrongSwan61Peer", "strongswan61_root"]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-strongswan61.sh"
_lock = threading.Lock()
_root_cache: list[Path] = []


def strongswan61_root() -> Path:
    """The chroot with strongSwan 6.1 (runs scripts/build-strongswan61.sh once; cached across runs)."""
    with _lock:
        if _root_cache:
            return _root_cache[0]
        result = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
        )
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise StrongSwanError(
                f"build-strongswan61.sh exited {result.returncode}:\n{result.stderr.strip()[-3000:]}"
            )
        root = Path(lines[-1])
        if not (root / "usr/sbin/charon-systemd").exists():
            raise StrongSwanError(f"no usr/sbin/charon-systemd under {root}")
        _root_cache.append(root)
        return root


class StrongSwan61Peer(StrongSwanPeer):
    """StrongSwanPeer whose charon-systemd and swanctl are strongSwan 6.1's, from the chroot."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.root = strongswan61_root()

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"StrongSwan61Peer({self.name!r}, ns={self.namespace.name!r}, pid={pid})"

    def _in_chroot(self, argv: Sequence[str]) -> list[str]:
        root = shlex.quote(str(self.root))
        binds = ["/tmp", "/dev"]
        workdir = str(self.workdir.resolve())
        if not workdir.startswith("/tmp/"):
            binds.append(workdir)
        script = ["set -e"]
        for path in binds:
            q = shlex.quote(path)
            script.append(f"mkdir -p {root}{q} && mount --bind {q} {root}{q}")
        script.append(f"mount -t proc proc {root}/proc")
        script.append(f"exec chroot {root} {' '.join(shlex.quote(a) for a in argv)}")
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", "; ".join(script)]

    def charon_argv(self) -> list[str]:
        return self._in_chroot(["/usr/sbin/charon-systemd"])

    def swanctl_argv(self, args: Sequence[str]) -> list[str]:
        return self._in_chroot(["/usr/sbin/swanctl", *args])

    def version(self) -> str:
        """charon's version as vici reports it (e.g. "6.1.0")."""
        reply = self._vici("version", lambda s: s.version())
        value = reply.get("version", b"")
        return value.decode() if isinstance(value, bytes) else str(value)

    def list_algs(self) -> str:
        """``swanctl --list-algs`` of this charon (the algorithms its plugins registered)."""
        return self.swanctl("--list-algs").stdout

