"""PKCS#11 tokens for tests: a SoftHSM2 token in a directory the test owns (SOFTHSM2_CONF), keys generated
inside the token (non-extractable, sensitive) the way an operator does it with python-pkcs11 or pkcs11-tool.

Token work runs in a child Python process with the token's environment: a PKCS#11 module reads its
configuration once per process (C_Initialize), so the test process never loads it itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.pki_tool import tool_path

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
USER_PIN = "246810"
SO_PIN = "13579111"

# Runs in the child: generate a key pair in the token, print the public key (PEM) and the private key's
# CKA_EXTRACTABLE / CKA_SENSITIVE, and whether reading its value (export) is refused.
_KEYGEN = r"""
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

module, label, pin, obj, kind = sys.argv[1:6]
token = pkcs11.lib(module).get_token(token_label=label)
private_template = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.SIGN: True}
with token.open(user_pin=pin, rw=True) as s:
    if kind == "existing":
        pub = s.get_key(object_class=ObjectClass.PUBLIC_KEY, label=obj)
        priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=obj)
        kind = "ec:" if pub.key_type == KeyType.EC else "rsa:0"
        der = encode_ec_public_key(pub) if kind == "ec:" else None
        if der is None:
            n = int.from_bytes(pub[Attribute.MODULUS], "big")
            e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
            der = rsa.RSAPublicNumbers(e, n).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    elif kind.startswith("ec:"):
        params = s.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(kind[3:])}, local=True)
        pub, priv = params.generate_keypair(store=True, label=obj, id=obj.encode(),
                                            private_template=private_template)
        der = encode_ec_public_key(pub)
    else:
        pub, priv = s.generate_keypair(KeyType.RSA, int(kind[4:]), store=True, label=obj, id=obj.encode(),
                                       private_template=private_template)
        n = int.from_bytes(pub[Attribute.MODULUS], "big")
        e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
        der = rsa.RSAPublicNumbers(e, n).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        priv[Attribute.VALUE if kind.startswith("ec:") else Attribute.PRIVATE_EXPONENT]
        export = "allowed"
    except pkcs11.exceptions.PKCS11Error as exc:
        export = type(exc).__name__
    pem = serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    print(json.dumps({"public_pem": pem, "extractable": bool(priv[Attribute.EXTRACTABLE]),
                      "sensitive": bool(priv[Attribute.SENSITIVE]), "export": export}))
"""


class TokenToolError(RuntimeError):
    """A token tool failed (its output in the message)."""


@dataclass(frozen=True)
class TokenKeyInfo:
    """What the keygen child reported about the key it generated."""

    public_pem: bytes
    extractable: bool
    sensitive: bool
    export: str  # "allowed" or the PKCS#11 error reading the private value gave


@dataclass
class Pkcs11Token:
    """One token: its module, label, user PIN and the environment the module needs (``env``)."""

    module: str
    label: str
    pin: str = USER_PIN
    env: dict[str, str] = field(default_factory=dict)

    def run(self, argv: list[str], *, timeout: float = 60.0) -> str:
        """Run a tool with the token's environment; TokenToolError with its output on failure."""
        done = subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise TokenToolError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def generate(self, obj: str, kind: str = "ec:secp384r1") -> TokenKeyInfo:
        """A key pair generated in the token (private half non-extractable and sensitive)."""
        out = self.run([sys.executable, "-c", _KEYGEN, self.module, self.label, self.pin, obj, kind])
        data = json.loads(out.strip().splitlines()[-1])
        return TokenKeyInfo(data["public_pem"].encode(), data["extractable"], data["sensitive"],
                            data["export"])

    def inspect(self, obj: str) -> TokenKeyInfo:
        """The public key and protection of a key pair made by the token's own tool (``obj`` = its label)."""
        out = self.run([sys.executable, "-c", _KEYGEN, self.module, self.label, self.pin, obj, "existing"])
        data = json.loads(out.strip().splitlines()[-1])
        return TokenKeyInfo(data["public_pem"].encode(), data["extractable"], data["sensitive"],
                            data["export"])

    def uri(self, obj: str, *, pin_source: str = "file:token.pin") -> str:
        """The RFC 7512 URI ikeguard's ``local.key`` takes for ``obj`` in this token."""
        return f"pkcs11:token={self.label};object={obj}?module-path={self.module}&pin-source={pin_source}"


def softhsm_token(directory: Path, label: str = "ikeguard") -> Pkcs11Token:
    """A fresh SoftHSM2 token whose objects live in ``directory/tokens`` (its own softhsm2.conf)."""
    tool = tool_path("softhsm2-util")  # Debian softhsm2; missing fails the test
    if not Path(SOFTHSM_MODULE).is_file():
        raise TokenToolError(f"{SOFTHSM_MODULE} is missing (apt install softhsm2)")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    token = Pkcs11Token(SOFTHSM_MODULE, label, env={"SOFTHSM2_CONF": str(conf)})
    token.run([tool, "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN])
    return token


TPM2_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"
_DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={bus}</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow receive_sender="*"/><allow own="*"/><allow user="*"/></policy></busconfig>
"""


def _wait_for(path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TokenToolError(f"{what} did not come up (exit {proc.poll()})")
        time.sleep(0.05)


@contextlib.contextmanager
def swtpm_token(directory: Path, label: str = "tpm") -> Iterator[Pkcs11Token]:
    """A TPM 2.0 token through tpm2-pkcs11: swtpm (socket mode) as the TPM, tpm2-abrmd on a private D-Bus
    as its resource manager (tpm2_ptool needs one: without it swtpm runs out of object slots), a
    tpm2-pkcs11 store in ``directory/store`` initialised with ``tpm2_ptool init`` / ``addtoken``.

    Every process is started here and stopped by its PID on exit, also on failure. Unix-socket paths reach
    into network namespaces, so a gateway in a test namespace uses the token with ``token.env``."""
    for tool in ("swtpm", "tpm2-abrmd", "dbus-daemon", "tpm2_ptool"):
        tool_path(tool)  # missing fails the test
    if not Path(TPM2_MODULE).is_file():
        raise TokenToolError(f"{TPM2_MODULE} is missing (apt install libtpm2-pkcs11-1)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / "state").mkdir(exist_ok=True)
    store = directory / "store"
    store.mkdir(exist_ok=True)
    sock, bus = directory / "tpm.sock", directory / "bus"
    (directory / "dbus.conf").write_text(_DBUS_CONF.format(bus=bus))
    procs: list[subprocess.Popen[bytes]] = []
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)

    def start(name: str, argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})})
        procs.append(proc)
        return proc

    try:
        tpm = start("swtpm", ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={directory / 'state'}",
                              "--server", f"type=unixio,path={sock}", "--ctrl",
                              f"type=unixio,path={sock}.ctrl", "--flags", "not-need-init,startup-clear"])
        _wait_for(sock, tpm, "swtpm")
        dbus = start("dbus", ["dbus-daemon", "--nofork", f"--config-file={directory / 'dbus.conf'}"])
        _wait_for(bus, dbus, "dbus-daemon")
        env = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus}", "TPM2TOOLS_TCTI": "tabrmd:bus_type=session",
               "TPM2_PKCS11_TCTI": "tabrmd:bus_type=session", "TPM2_PKCS11_STORE": str(store)}
        start("abrmd", ["tpm2-abrmd", "--session", f"--tcti=swtpm:path={sock}", "--allow-root"], env)
        token = Pkcs11Token(TPM2_MODULE, label, env=env)
        deadline = time.monotonic() + 15
        while True:  # abrmd registers its bus name shortly after start
            try:
                token.run(["tpm2_ptool", "init", "--path", str(store)])
                break
            except TokenToolError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        token.run(["tpm2_ptool", "addtoken", "--pid=1", f"--sopin={SO_PIN}", f"--userpin={USER_PIN}",
                   f"--label={label}", "--path", str(store)])
        yield token
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def tpm_add_key(token: Pkcs11Token, obj: str, algorithm: str = "ecc384") -> TokenKeyInfo:
    """``tpm2_ptool addkey``: a key generated in the TPM (its private part never leaves it in clear)."""
    token.run(["tpm2_ptool", "addkey", f"--label={token.label}", f"--key-label={obj}",
               f"--userpin={token.pin}", f"--algorithm={algorithm}",
               "--path", token.env["TPM2_PKCS11_STORE"]])
    return token.inspect(obj)


def token_env(token: Pkcs11Token, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a gateway using the token needs."""
    return {**token.env, **(extra or {})}
