"""libreswan 5.2 (Debian 13) for the PPK interop tests (RFC 8784), run from the strongSwan 6.1 chroot.

Debian's libreswan Conflicts with strongSwan's libcharon, so scripts/build-strongswan61.sh unpacks the trixie
package into the chroot's /opt/libreswan with its runtime libraries installed. ``Libreswan52Peer`` is
``LibreswanPeer`` (tests/harness/libreswan.py: ipsec.conf, secrets, NSS database, whack) with pluto, whack and
addconn run in that chroot under ``unshare -m``: /tmp, /dev, the workdir and a fresh /proc bind-mounted at the
same paths, and /opt/libreswan/usr/libexec/ipsec over /usr/libexec/ipsec (pluto execs addconn from there).
As the 4.x peer, pluto negotiates IKE and Child SAs but cannot install ESP on this kernel: an IKE-level peer.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness.libreswan import LibreswanError, LibreswanPeer, _sh, _started, _started_lock
from tests.harness.strongswan61 import strongswan61_root

__all__ = ["Libreswan52Peer"]

LIBEXEC = "/opt/libreswan/usr/libexec/ipsec"


class Libreswan52Peer(LibreswanPeer):
    """pluto 5.2 from the strongSwan 6.1 chroot; ``ppks`` adds ``PPKS`` lines to ipsec.secrets (RFC 8784)."""

    def __init__(self, *args: Any, ppks: Sequence[tuple[str, str, str, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ppks = list(ppks)  # (our id, peer id, PPK_ID, secret)
        self.chroot = strongswan61_root()

    @property
    def root(self) -> Path:
        return self.chroot / "opt/libreswan"

    def _tool(self, name: str) -> str:
        return f"{LIBEXEC}/{name}"

    def _in_chroot(self, argv: Sequence[str]) -> list[str]:
        root = shlex.quote(str(self.chroot))
        binds = ["/tmp", "/dev"]
        if not str(self.workdir).startswith("/tmp/"):
            binds.append(str(self.workdir))
        script = ["set -e"]
        for path in binds:
            q = shlex.quote(path)
            script.append(f"mkdir -p {root}{q} && mount --bind {q} {root}{q}")
        script.append(f"mount -t proc proc {root}/proc")
        script.append(f"mkdir -p {root}/usr/libexec/ipsec"
                      f" && mount --bind {root}{LIBEXEC} {root}/usr/libexec/ipsec")
        script.append(f"exec chroot {root} {' '.join(_sh(a) for a in argv)}")
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", "; ".join(script)]

    def write_config(self) -> None:
        super().write_config()
        if self.ppks:  # ipsec.secrets(5): ID ID : PPKS "PPK_ID" "secret"
            with open(self.secrets_path, "a") as fh:
                for ours, peer, ppk_id, secret in self.ppks:
                    fh.write(f'{ours} {peer} : PPKS "{ppk_id}" "{secret}"\n')

    def start(self, timeout: float = 15.0) -> Libreswan52Peer:
        if self.process is not None:
            raise LibreswanError(f"{self.name}: already started")
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.ctl_socket.unlink()
        pluto = [
            self._tool("pluto"), "--nofork", "--stderrlog", "--config", str(self.conf_path),
            "--rundir", str(self.run_dir), "--nssdir", str(self.nss_dir), "--secretsfile",
            str(self.secrets_path), "--ipsecdir", str(self.workdir), "--nhelpers", "1",
        ]
        out = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.process = self.namespace.popen(self._in_chroot(pluto), stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        with _started_lock:
            _started.append(self.process)
        try:
            self._wait_ctl(timeout)
            for conn in self.connections:
                self.addconn(conn.name)
        except BaseException:
            self.stop()
            raise
        return self

    def whack(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        argv = self._in_chroot([self._tool("whack"), "--ctlsocket", str(self.ctl_socket), *args])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                                env={**os.environ})
        if check and result.returncode != 0:
            raise LibreswanError(f"{self.name}: whack {' '.join(args)} exited {result.returncode}: "
                                 f"{(result.stdout + result.stderr).strip()}")
        return result.stdout + result.stderr

    def addconn(self, conn: str) -> None:
        self._run(self._in_chroot([self._tool("addconn"), "--ctlsocket", str(self.ctl_socket), "--config",
                                   str(self.conf_path), conn]))
