"""PKCS#11 tokens for tests: a SoftHSM2 token in a directory the test owns (SOFTHSM2_CONF), keys generated
inside the token (non-extractable, sensitive) the way an operator does it with python-pkcs11 or pkcs11-tool.

Token work runs in a child Python process with the token's environment: a PKCS#11 module reads its
configuration once per process (C_Initialize), so the test process never loads it itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
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
    if kind.startswith("ec:"):
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


def token_env(token: Pkcs11Token, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a gateway using the token needs."""
    return {**token.env, **(extra or {})}
