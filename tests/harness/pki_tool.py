"""Certificates as operators make them: strongSwan's `pki` tool and the OpenSSL CLI, run as commands.

The project's own certificate factory (ikeguard.tools.certfactory) builds certificates with `cryptography`;
a difference between what it makes and what operators' tools make (extensions, their criticality, key file
formats) would go unseen if every test used it. These builders run the real tools in a directory, the way
the strongSwan documentation and an OpenSSL CA do it, and hand back the files as written:

    tool = PkiTool(tmp_path / "pki")                      # pki --gen / --self --ca / --pub | --issue
    ca = tool.self_signed_ca("ca", "C=US, O=Lab, CN=Lab CA")
    gw = tool.issue("gw", ca, "C=US, O=Lab, CN=gw.example", sans=["gw.example"],
                    flags=["serverAuth", "clientAuth"])
    ssl = OpensslCa(tmp_path / "ossl")                    # openssl req -x509 / req + x509 -req -extfile
    leaf = ssl.issue("client", ssl.self_signed_ca("ca", "/O=Lab/CN=Lab CA"), "/CN=client.example",
                     sans=["client.example"], extensions=["extendedKeyUsage = critical, clientAuth"])

Validity is relative to now (the tools read the clock), so nothing depends on the day the suite runs.
Private keys are written with umask 077 (0600), as `ikeguard check` (key.file-mode) requires. ``ToolCert``
gives the PEM bytes as the tool wrote them (ikeguard's files) and an ``IssuedCertificate`` for the
strongSwan harness (same certificate DER; the key re-encoded as PKCS#8, which strongSwan reads alike).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import IssuedCertificate

__all__ = [
    "WINDOWS_CLIENT_TEMPLATE",
    "WINDOWS_GATEWAY_TEMPLATE",
    "OpensslCa",
    "PkiTool",
    "ToolCert",
    "ToolError",
    "tool_path",
]

# What a Windows CA's certificate templates put in IKE certificates (the "RAS and IAS Server" / "Computer"
# templates, RSA keys): keyUsage digitalSignature + keyEncipherment, EKU serverAuth (gateway) or clientAuth
# (client), never ipsecIKE.
WINDOWS_GATEWAY_TEMPLATE = ("keyUsage = critical, digitalSignature, keyEncipherment",
                            "extendedKeyUsage = serverAuth")
WINDOWS_CLIENT_TEMPLATE = ("keyUsage = critical, digitalSignature, keyEncipherment",
                           "extendedKeyUsage = clientAuth")

# strongSwan's pki loads its tpm plugin and complains on machines without a TPM daemon: only that is dropped.
_NOISE = ("libtss2-tcti-tabrmd", "plugin 'tpm'")


class ToolError(RuntimeError):
    """The tool failed (its command line and stderr are in the message)."""


def tool_path(name: str) -> str:
    """The tool's path; ToolError naming the package when it is missing."""
    path = shutil.which(name)
    if path is None:
        package = {"pki": "strongswan-pki", "openssl": "openssl"}.get(name, name)
        raise ToolError(f"{name} is missing (apt install {package})")
    return path


def _run(argv: Sequence[str], *, cwd: Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, cwd=cwd, check=False, timeout=60,
                          preexec_fn=lambda: os.umask(0o077))
    if done.returncode != 0:
        err = "\n".join(line for line in done.stderr.decode(errors="replace").splitlines()
                        if not any(n in line for n in _NOISE))
        raise ToolError(f"{' '.join(argv)} exited {done.returncode}: {err}")
    return done.stdout


@dataclass(frozen=True)
class ToolCert:
    """A certificate file and its private key file as a tool wrote them."""

    name: str
    cert_path: Path
    key_path: Path

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()

    def key_pem(self) -> bytes:
        """The key file's bytes as written (pki: SEC1/PKCS#1 PEM; openssl: PKCS#8)."""
        return self.key_path.read_bytes()

    def issued(self, *chain: ToolCert) -> IssuedCertificate:
        """For StrongSwanPeer(certs=...): this certificate, its key and the issuing chain."""
        key = serialization.load_pem_private_key(self.key_pem(), password=None)
        return IssuedCertificate(self.cert, key, tuple(c.cert for c in chain))  # type: ignore[arg-type]


class PkiTool:
    """strongSwan's `pki` in ``directory``: ECDSA (default P-384) or RSA keys, SHA-384 signatures."""

    def __init__(self, directory: Path, *, key_type: str = "ecdsa", key_size: int = 384,
                 digest: str = "sha384") -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tool = tool_path("pki")
        self.key_type, self.key_size, self.digest = key_type, key_size, digest

    def _pki(self, *args: str, stdin: bytes | None = None) -> bytes:
        return _run([self.tool, *args], cwd=self.directory, stdin=stdin)

    def key(self, name: str) -> Path:
        """``pki --gen --type T --size N --outform pem > NAME.key`` (0600)."""
        path = self.directory / f"{name}.key"
        data = self._pki("--gen", "--type", self.key_type, "--size", str(self.key_size), "--outform", "pem")
        _write(path, data, 0o600)
        return path

    def public(self, name: str) -> Path:
        """``pki --pub --in NAME.key --outform pem > NAME.pub``: the public key alone (a raw public key,
        RFC 7670, as swanctl's ``pubkeys`` and ikeguard's ``pubkeys`` read it)."""
        path = self.directory / f"{name}.pub"
        _write(path, self._pki("--pub", "--in", str(self.directory / f"{name}.key"), "--outform", "pem"),
               0o644)
        return path

    def self_signed_ca(self, name: str, dn: str, *, lifetime_days: int = 30) -> ToolCert:
        """``pki --self --ca --in NAME.key --dn DN --lifetime D > NAME.pem``."""
        key = self.key(name)
        cert = self._pki("--self", "--ca", "--in", str(key), "--dn", dn, "--lifetime", str(lifetime_days),
                         "--digest", self.digest, "--outform", "pem")
        path = self.directory / f"{name}.pem"
        _write(path, cert, 0o644)
        return ToolCert(name, path, key)

    def issue(self, name: str, ca: ToolCert, dn: str, *, sans: Sequence[str] = (),
              flags: Sequence[str] = (), lifetime_days: int = 10) -> ToolCert:
        """``pki --pub --in NAME.key | pki --issue --cacert CA --cakey CA.key --dn DN [--san S]...
        [--flag F]... > NAME.pem`` (flags: serverAuth, clientAuth, ikeIntermediate, ...: the EKU)."""
        key = self.key(name)
        public = self._pki("--pub", "--in", str(key))
        args = ["--issue", "--cacert", str(ca.cert_path), "--cakey", str(ca.key_path), "--dn", dn,
                "--lifetime", str(lifetime_days), "--digest", self.digest, "--outform", "pem"]
        for san in sans:
            args += ["--san", san]
        for flag in flags:
            args += ["--flag", flag]
        cert = self._pki(*args, stdin=public)
        path = self.directory / f"{name}.pem"
        _write(path, cert, 0o644)
        return ToolCert(name, path, key)

    def issue_public(self, name: str, ca: ToolCert, dn: str, public_pem: bytes, *, sans: Sequence[str] = (),
                     lifetime_days: int = 10) -> Path:
        """``pki --issue --type pub --cacert CA --cakey CA.key --dn DN [--san S]... < public.pem``: a
        certificate for a key that lives elsewhere (a token), issued from its public key."""
        args = ["--issue", "--type", "pub", "--cacert", str(ca.cert_path), "--cakey", str(ca.key_path),
                "--dn", dn, "--lifetime", str(lifetime_days), "--digest", self.digest, "--outform", "pem"]
        for san in sans:
            args += ["--san", san]
        cert = self._pki(*args, stdin=public_pem)
        path = self.directory / f"{name}.pem"
        _write(path, cert, 0o644)
        return path


class OpensslCa:
    """The OpenSSL CLI in ``directory``: ``req -x509`` for the CA, ``req`` + ``x509 -req -extfile`` for
    leaves, with the extension lines an OpenSSL CA (or a Windows template) puts in.

    ``key``: ``ec:secp384r1`` style curves or ``rsa:3072``."""

    def __init__(self, directory: Path, *, key: str = "ec:secp384r1", digest: str = "sha384") -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tool = tool_path("openssl")
        self.key, self.digest = key, digest

    def _newkey(self) -> list[str]:
        kind, _, param = self.key.partition(":")
        if kind == "ec":
            return ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{param}"]
        return ["-newkey", self.key]

    def _openssl(self, *args: str) -> bytes:
        return _run([self.tool, *args], cwd=self.directory)

    def self_signed_ca(self, name: str, subject: str, *, days: int = 30) -> ToolCert:
        """``openssl req -x509 -new -newkey ... -nodes -subj SUBJ -days D`` with CA extensions."""
        self._openssl("req", "-x509", "-new", *self._newkey(), "-nodes", f"-{self.digest}",
                      "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", subject, "-days", str(days),
                      "-addext", "basicConstraints = critical, CA:TRUE",
                      "-addext", "keyUsage = critical, keyCertSign, cRLSign")
        return ToolCert(name, self.directory / f"{name}.pem", self.directory / f"{name}.key")

    def issue(self, name: str, ca: ToolCert, subject: str, *, sans: Sequence[str] = (),
              extensions: Sequence[str] = (), days: int = 10) -> ToolCert:
        """``openssl req -new`` then ``openssl x509 -req -CA ... -extfile NAME.ext``; ``extensions`` are
        extension-file lines such as ``extendedKeyUsage = critical, serverAuth, clientAuth``."""
        self._openssl("req", "-new", *self._newkey(), "-nodes", "-keyout", f"{name}.key", "-out",
                      f"{name}.csr", "-subj", subject)
        lines = ["basicConstraints = CA:FALSE", "subjectKeyIdentifier = hash",
                 "authorityKeyIdentifier = keyid"]
        if sans:
            lines.append("subjectAltName = " + ", ".join(
                f"IP:{s}" if _is_ip(s) else f"DNS:{s}" for s in sans))
        lines += list(extensions)
        ext = self.directory / f"{name}.ext"
        ext.write_text("\n".join(lines) + "\n")
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert_path), "-CAkey",
                      str(ca.key_path), "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days),
                      f"-{self.digest}", "-extfile", ext.name)
        return ToolCert(name, self.directory / f"{name}.pem", self.directory / f"{name}.key")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
