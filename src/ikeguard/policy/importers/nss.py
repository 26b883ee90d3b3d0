"""libreswan's NSS certificate database (``/var/lib/ipsec/nss``, ``ipsec import``, ``ipsec initnss``) for
``ikeguard import --nssdb DIR``: libreswan's ``leftcert`` is an NSS nickname and its trust anchors are the
database's CA entries, so the import exports them in the ipsec.d layout the translators read:

* certificates of ours (trust ``u``: a private key is in the database) to ``certs/NICK.pem``
  (``certutil -L -n NICK -a``) and their keys to ``private/NICK.pem`` (``pk12util -o``, unwrapped with
  ``cryptography``'s PKCS#12 reader, written 0600, never shown);
* CAs trusted for TLS/IPsec (``C`` or ``T`` in the first trust field) to ``cacerts/NICK.pem``;
* anything else is listed: peer certificates without trust (peers are trusted through their CA), keys
  that cannot be exported (a password-protected database without ``--nssdb-password-file``, keys on a
  token or marked non-extractable, FIPS mode), nicknames that are not file names.

NSS is read with its own tools (``certutil``/``pk12util`` of libnss3-tools) as libreswan's documentation
does: no maintained Python binding reads the SQL database. Every call has a timeout and no terminal, so a
database that wants a password fails instead of prompting.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ikeguard.policy.importers.settings_syntax import SettingsSyntaxError
from ikeguard.policy.importers.swanctl import Unmapped

TIMEOUT = 30.0
_LINE = re.compile(r"^(?P<nick>\S.*?)\s+(?P<trust>[A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.,=@()-]{0,127}$")  # usable as a file name (no /, no leading .)


@dataclass
class NssExport:
    """What :func:`export_nssdb` wrote (under ``directory``) and what it could not carry over."""

    directory: Path
    certs: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    cacerts: list[str] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)


def _tools() -> tuple[str, str]:
    certutil, pk12util = shutil.which("certutil"), shutil.which("pk12util")
    if certutil is None or pk12util is None:
        raise SettingsSyntaxError("--nssdb needs certutil and pk12util (Debian package libnss3-tools)")
    return certutil, pk12util


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def list_nicknames(nssdb: Path) -> list[tuple[str, str]]:
    """(nickname, trust attributes) of every certificate in the database (``certutil -L``)."""
    certutil, _ = _tools()
    result = _run([certutil, "-L", "-d", f"sql:{nssdb}"])
    if result.returncode != 0:
        raise SettingsSyntaxError(f"--nssdb {nssdb}: certutil -L failed: "
                                  f"{result.stderr.decode(errors='replace').strip()[:300]}")
    out = []
    for line in result.stdout.decode(errors="replace").splitlines():
        m = _LINE.match(line)
        if m and not line.startswith(("Certificate Nickname", "SSL,S/MIME")):
            out.append((m.group("nick"), m.group("trust")))
    return out


def _export_key(pk12util: str, nssdb: Path, nick: str, password_file: Path | None) -> bytes | str:
    """The private key of ``nick`` as unencrypted PKCS#8 PEM, or why it cannot be exported."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    with tempfile.TemporaryDirectory(prefix="ikg-nss-") as tmp:
        p12, pw = Path(tmp) / "key.p12", Path(tmp) / "p12.pw"
        transfer = secrets.token_hex(16)  # protects the PKCS#12 file for the moment it exists
        _write(pw, transfer.encode())
        argv = [pk12util, "-o", str(p12), "-n", nick, "-d", f"sql:{nssdb}", "-w", str(pw)]
        argv += ["-k", str(password_file)] if password_file is not None else []
        try:
            result = _run(argv)
        except subprocess.TimeoutExpired:
            return "pk12util did not finish (a database password is needed: --nssdb-password-file)"
        if result.returncode != 0 or not p12.is_file():
            why = result.stderr.decode(errors="replace").strip().splitlines()
            return f"pk12util could not export the key: {why[-1][:200] if why else result.returncode}"
        try:
            with warnings.catch_warnings():  # pk12util writes BER, which cryptography reads with a warning
                warnings.simplefilter("ignore", UserWarning)
                key, _cert, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), transfer.encode())
        except ValueError as exc:
            return f"the exported PKCS#12 file does not read back: {exc}"
    if key is None:
        return "the database holds no private key for it"
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def export_nssdb(nssdb: Path, directory: Path, *, password_file: Path | None = None) -> NssExport:
    """Export our certificates with their keys and the trusted CAs of ``nssdb`` into ``directory``
    (``certs/``, ``private/``, ``cacerts/``); what is not exported is in ``unmapped``."""
    certutil, pk12util = _tools()
    export = NssExport(directory)
    where = f"sql:{nssdb}"
    for nick, trust in list_nicknames(nssdb):
        key = f"nssdb {nick}"
        ours, ca = "u" in trust, any(c in trust.split(",")[0] for c in "CT")
        if not ours and not ca:
            export.unmapped.append(Unmapped(key, trust, "a peer certificate without CA trust: not needed "
                                            "(peers are trusted through their CA's certificate)", where))
            continue
        if not _SAFE.match(nick):
            export.unmapped.append(Unmapped(key, trust, "nickname is not a file name: export it by hand "
                                            "(certutil -L -n NICK -a) and set the certificate path", where))
            continue
        pem = _run([certutil, "-L", "-d", where, "-n", nick, "-a"])
        if pem.returncode != 0 or b"BEGIN CERTIFICATE" not in pem.stdout:
            export.unmapped.append(Unmapped(key, trust, "certutil could not export the certificate", where))
            continue
        if ca and not ours:
            _write(directory / "cacerts" / f"{nick}.pem", pem.stdout)
            export.cacerts.append(nick)
            continue
        _write(directory / "certs" / f"{nick}.pem", pem.stdout)
        export.certs.append(nick)
        private = _export_key(pk12util, nssdb, nick, password_file)
        if isinstance(private, str):
            export.unmapped.append(Unmapped(f"{key} (private key)", "(not shown)", private, where))
        else:
            _write(directory / "private" / f"{nick}.pem", private)
            export.keys.append(nick)
    return export
