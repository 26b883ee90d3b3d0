"""Private keys that stay in a PKCS#11 token (SoftHSM2, tpm2-pkcs11, an HSM), addressed by an RFC 7512 URI.

``local.key = "pkcs11:token=gw;object=ike?pin-source=file:/etc/ikeguard/pin"`` names the token (``token``,
``serial``, ``manufacturer``, ``model``, RFC 7512 §2.3) and the key object (``object`` label and/or ``id``).
Query attributes: ``pin-source`` (RFC 7512 §2.3: ``file:`` URI or plain path; the ikeguard extension
``env:NAME`` reads an environment variable; default ``env:IKEGUARD_PKCS11_PIN``) and ``module-path`` (default
SoftHSM2's). ``pin-value`` is refused: a PIN never sits in the configuration, and never appears in an error,
log or repr.

``TokenKey`` objects are subclasses of cryptography's ``EllipticCurvePrivateKey`` / ``RSAPrivateKey`` whose
``sign`` runs on the token (ECDSA over a digest made here with CKM_ECDSA, RSASSA-PSS with CKM_RSA_PKCS_PSS,
PKCS#1 v1.5 with CKM_RSA_PKCS over a DigestInfo; an RSA key's ``decrypt``, PKCS#1 v1.5 with CKM_RSA_PKCS,
opens SCEP answers), so the RFC 7427 signing path (``crypto.signatures``) uses
file keys and token keys alike. Export (``private_bytes`` / ``private_numbers``) raises.

A ``SessionPool`` keeps the logged-in session (C_Login once per token, PKCS#11 v2.40 §5.6) so an IKE SA does
not open the token; calls are serialised (python-pkcs11 initialises modules without OS locking); a failed
operation drops the session and the next use logs in again. Token errors surface as ``TokenUnavailable`` (a
``CryptoError``): the engine refuses that IKE SA with the reason; SAs already established never touch the
key again.

python-pkcs11 does the PKCS#11 calls; this module only maps the URI and cryptography's key interface onto it.
"""

from __future__ import annotations

import os
import sysconfig
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from ikeguard.crypto.errors import CryptoError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_PIN_ENV = "IKEGUARD_PKCS11_PIN"
_TOKEN_ATTRS = {"token": "token_label", "serial": "token_serial", "manufacturer": "manufacturer_id",
                "model": "model"}  # fmt: skip
_KNOWN_PATH = {*_TOKEN_ATTRS, "object", "id", "type", "slot-id", "library-manufacturer",
               "library-description", "library-version", "slot-description", "slot-manufacturer"}


class TokenError(CryptoError):
    """The URI is wrong, or the token/key cannot be opened (one line, never the PIN)."""


class TokenUnavailable(TokenError):
    """A token operation failed at run time (token removed, unreadable, logged out)."""


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI ikeguard uses; ``pin_source`` is where the PIN is, never the PIN."""

    token: dict[str, str]
    label: str | None
    key_id: bytes | None
    module_path: str = DEFAULT_MODULE
    pin_source: str = f"env:{DEFAULT_PIN_ENV}"

    def describe(self) -> str:
        """A loggable text: token and object, no PIN."""
        where = ";".join(f"{k}={v}" for k, v in self.token.items())
        obj = f"object={self.label}" if self.label else f"id=%{self.key_id.hex() if self.key_id else ''}"
        return f"pkcs11:{where};{obj}"


def is_pkcs11_uri(text: str) -> bool:
    """True for ``pkcs11:...`` (RFC 7512 §2.3 scheme), the form ``local.key`` takes for a token key."""
    return text.strip().lower().startswith("pkcs11:")


def module_dirs() -> tuple[Path, ...]:
    """Where ``module-name`` is looked up: Debian's PKCS#11 module directory (p11-kit's, where
    tpm2-pkcs11 and opensc put theirs), SoftHSM2's, then the library directories."""
    arch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    return (Path(f"/usr/lib/{arch}/pkcs11"), Path("/usr/lib/softhsm"), Path(f"/usr/lib/{arch}"),
            Path("/usr/lib"))


def module_for_name(name: str, dirs: tuple[Path, ...] | None = None) -> str:
    """RFC 7512 §2.4 ``module-name``: the module's name without the ``lib`` prefix and the extension
    (``softhsm2``, ``tpm2_pkcs11``); the first ``libNAME.so`` or ``NAME.so`` in ``module_dirs()``."""
    if not name or "/" in name:
        raise TokenError(f"pkcs11 URI: module-name {name!r} is not a module name "
                         "(use module-path for a path)")
    searched = dirs if dirs is not None else module_dirs()
    for directory in searched:
        for file in (f"lib{name}.so", f"{name}.so"):
            if (directory / file).is_file():
                return str(directory / file)
    raise TokenError(f"pkcs11 URI: no PKCS#11 module lib{name}.so in {', '.join(map(str, searched))}")


def parse_uri(text: str) -> Pkcs11Uri:
    """Parse an RFC 7512 URI (percent-encoding, §2.3); unknown path attributes and ``pin-value`` refused."""
    if not is_pkcs11_uri(text):
        raise TokenError("not a pkcs11: URI")
    body = text.strip()[len("pkcs11:"):]
    path, _, query = body.partition("?")
    token: dict[str, str] = {}
    label: str | None = None
    key_id: bytes | None = None
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in _KNOWN_PATH:
            raise TokenError(f"pkcs11 URI: unknown path attribute {name!r} (RFC 7512 §2.3)")
        if name in _TOKEN_ATTRS:
            token[name] = urllib.parse.unquote(value)
        elif name == "object":
            label = urllib.parse.unquote(value)
        elif name == "id":
            key_id = urllib.parse.unquote_to_bytes(value)
        elif name == "type" and value not in ("private", ""):
            raise TokenError("pkcs11 URI: type must be private for local.key")
    module, module_name, pin_source = DEFAULT_MODULE, None, f"env:{DEFAULT_PIN_ENV}"
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name == "pin-value":
            raise TokenError("pkcs11 URI: pin-value is not allowed (the PIN never goes in the "
                             "configuration): use pin-source=file:PATH or pin-source=env:NAME")
        if name == "pin-source":
            pin_source = urllib.parse.unquote(value)
        elif name == "module-path":
            module = urllib.parse.unquote(value)
        elif name == "module-name":
            module_name = urllib.parse.unquote(value)
        else:
            raise TokenError(f"pkcs11 URI: unknown query attribute {name!r} (RFC 7512 §2.4)")
    if module_name is not None and "module-path=" not in query.lower():  # module-path wins (§2.4)
        module = module_for_name(module_name)
    if not token:
        raise TokenError("pkcs11 URI: name the token (token=LABEL or serial=...)")
    if label is None and key_id is None:
        raise TokenError("pkcs11 URI: name the key (object=LABEL and/or id=%..)")
    return Pkcs11Uri(token, label, key_id, module, pin_source)


def safe_uri_text(text: str) -> str:
    """The URI for a finding or log: the path part only (a query might carry a pin-value)."""
    return text.strip().partition("?")[0]


def read_pin(source: str, base: Path | None = None) -> str:
    """The PIN from ``file:PATH``, a plain path or ``env:NAME``; TokenError names the source, not the PIN."""
    if source.startswith("env:"):
        name = source[4:]
        value = os.environ.get(name)
        if value is None:
            raise TokenError(f"PKCS#11 PIN: environment variable {name} is not set")
        return value
    path = Path(urllib.parse.urlparse(source).path if source.startswith("file:") else source)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"PKCS#11 PIN: cannot read {path} ({type(exc).__name__})") from None


@dataclass(frozen=True)
class AccessRecord:
    """One line of the HSM access log: ``hsm.login``, ``hsm.sign`` (``count`` signatures since the last
    drain) or ``hsm.error`` (``detail``: the PKCS#11 error name); ``key`` is the URI without its query."""

    event: str
    key: str
    count: int = 1
    detail: str = ""


class AccessLog:
    """Counts token use for the HSM access log; the service drains it into audit events once a minute.

    Pure bookkeeping (thread-safe, no I/O): signatures are aggregated per key, logins and errors kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signs: dict[str, int] = {}
        self._other: list[AccessRecord] = []

    def note(self, event: str, key: str, detail: str = "") -> None:
        """Count one token use (``hsm.sign``) or keep one ``hsm.login`` / ``hsm.decrypt`` / ``hsm.error``."""
        with self._lock:
            if event == "hsm.sign":
                self._signs[key] = self._signs.get(key, 0) + 1
            else:
                self._other.append(AccessRecord(event, key, 1, detail))

    def drain(self) -> list[AccessRecord]:
        """Everything noted since the last drain: logins and errors first, then one ``hsm.sign`` per key."""
        with self._lock:
            out = self._other + [AccessRecord("hsm.sign", k, n) for k, n in sorted(self._signs.items())]
            self._other, self._signs = [], {}
        return out


ACCESS_LOG = AccessLog()  # the process's token keys report here unless given another log

# python-pkcs11 initialises a module with C_Initialize(NULL): no OS locking promised (PKCS#11 v2.40 §5.4),
# so calls into a module are serialised here; a second thread waits instead of corrupting the module's state.
_CALL_LOCK = threading.Lock()


@dataclass(eq=False)
class SessionPool:
    """The logged-in session of one token, reused across signatures (C_Login once, not per IKE SA).

    Token calls are serialised (``_CALL_LOCK``). A session whose operation failed is dropped and the next use
    logs in again. The PIN is a field no repr shows."""

    token: Any
    pin: str = field(repr=False)
    key: str = ""
    log: AccessLog | None = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)
    _logins: int = 0

    def _open(self) -> Any:
        import pkcs11

        try:
            session = self.token.open(user_pin=self.pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:  # login is per token and process (PKCS#11 §5.6)
            try:
                session = self.token.open()
            except pkcs11.exceptions.PKCS11Error as exc:
                raise TokenUnavailable(f"PKCS#11 session failed: {type(exc).__name__}") from None
        except pkcs11.exceptions.PinIncorrect:
            raise TokenError("PKCS#11 login failed: wrong PIN") from None
        except pkcs11.exceptions.PKCS11Error as exc:
            raise TokenUnavailable(f"PKCS#11 login failed: {type(exc).__name__}") from None
        self._logins += 1
        if self.log is not None:
            self.log.note("hsm.login", self.key)
        return session

    @contextmanager
    def session(self) -> Iterator[Any]:
        """The logged-in session for one operation (exclusive); dropped if the operation failed."""
        with _CALL_LOCK:
            if self._session is None:
                self._session = self._open()
            try:
                yield self._session
            except BaseException:
                session, self._session = self._session, None
                with suppress(Exception):  # the token may be gone; the session is dropped anyway
                    session.close()
                raise

    @property
    def logins(self) -> int:
        """How many times a session was opened (1 while the token works)."""
        return self._logins


def _refuse_export() -> NoReturn:
    raise TokenError("the private key is in a PKCS#11 token and cannot be exported")


class _TokenOps:
    """Finds the key object in a pooled session and signs with it."""

    def __init__(self, pool: SessionPool, uri: Pkcs11Uri) -> None:
        self.pool, self.uri = pool, uri
        self._found: tuple[Any, Any] | None = None  # (session, key object): one C_FindObjects a session

    def find(self, session: Any, object_class: Any) -> Any:
        kwargs: dict[str, Any] = {"object_class": object_class}
        if self.uri.label is not None:
            kwargs["label"] = self.uri.label
        if self.uri.key_id is not None:
            kwargs["id"] = self.uri.key_id
        return session.get_key(**kwargs)

    def _run(self, operation: str, data: bytes, mechanism: Any, param: Any = None) -> bytes:
        import pkcs11

        try:
            with self.pool.session() as session:
                if self._found is None or self._found[0] is not session:
                    self._found = (session, self.find(session, pkcs11.ObjectClass.PRIVATE_KEY))
                key = self._found[1]
                call = key.sign if operation == "sign" else key.decrypt
                result: bytes = call(data, mechanism=mechanism, mechanism_param=param)
        except TokenError:
            raise
        except (pkcs11.exceptions.PKCS11Error, RuntimeError) as exc:
            if self.pool.log is not None:
                self.pool.log.note("hsm.error", self.uri.describe(), type(exc).__name__)
            what = "signature" if operation == "sign" else "decryption"
            raise TokenUnavailable(f"PKCS#11 {what} failed on {self.uri.describe()}: "
                                   f"{type(exc).__name__}") from None
        if self.pool.log is not None:
            self.pool.log.note(f"hsm.{operation}", self.uri.describe())
        return result

    def sign(self, data: bytes, mechanism: Any, param: Any = None) -> bytes:
        return self._run("sign", data, mechanism, param)

    def decrypt(self, data: bytes, mechanism: Any) -> bytes:
        return self._run("decrypt", data, mechanism)


def _digest(data: bytes, algorithm: Any) -> tuple[bytes, hashes.HashAlgorithm]:
    if isinstance(algorithm, asym_utils.Prehashed):
        return data, algorithm._algorithm  # cryptography has no public getter
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """An ECDSA key in a token: sign hashes here, then CKM_ECDSA on the token (raw r||s -> DER)."""

    off_loop = True  # signing may block (a TPM takes milliseconds): the gateway signs in a worker thread

    def __init__(self, ops: _TokenOps, public: ec.EllipticCurvePublicKey) -> None:
        self._ops, self._public = ops, public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        import pkcs11

        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TokenError("only ECDSA signatures are made with an EC token key")
        digest, _ = _digest(bytes(data), signature_algorithm.algorithm)
        raw = self._ops.sign(digest, pkcs11.Mechanism.ECDSA)
        half = len(raw) // 2
        return asym_utils.encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                               int.from_bytes(raw[half:], "big"))

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TokenError("ECDH with a token key is not used by ikeguard")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _refuse_export()

    def private_bytes(self, encoding: serialization.Encoding, format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        _refuse_export()

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenEcKey:
        return self

    def __repr__(self) -> str:
        return f"<TokenEcKey {self._ops.uri.describe()} {self.curve.name}>"


class TokenRsaKey(rsa.RSAPrivateKey):
    """An RSA key in a token: RSASSA-PSS (CKM_RSA_PKCS_PSS over a digest) or PKCS#1 v1.5 (CKM_RSA_PKCS)."""

    off_loop = True

    def __init__(self, ops: _TokenOps, public: rsa.RSAPublicKey) -> None:
        self._ops, self._public = ops, public

    def sign(self, data: Any, padding_: padding.AsymmetricPadding, algorithm: Any) -> bytes:
        import pkcs11
        from pkcs11 import MGF, Mechanism

        digest, alg = _digest(bytes(data), algorithm)
        mech = {"sha256": (Mechanism.SHA256, MGF.SHA256), "sha384": (Mechanism.SHA384, MGF.SHA384),
                "sha512": (Mechanism.SHA512, MGF.SHA512)}.get(alg.name)  # fmt: skip
        if mech is None:
            raise TokenError(f"hash {alg.name} is not used with a token RSA key")
        if isinstance(padding_, padding.PSS):
            salt = padding_._salt_length  # cryptography keeps it private
            salt_len = alg.digest_size if not isinstance(salt, int) else salt
            return self._ops.sign(digest, pkcs11.Mechanism.RSA_PKCS_PSS, (mech[0], mech[1], salt_len))
        if isinstance(padding_, padding.PKCS1v15):
            prefix = {"sha256": "3031300d060960864801650304020105000420",
                      "sha384": "3041300d060960864801650304020205000430",
                      "sha512": "3051300d060960864801650304020305000440"}[alg.name]  # RFC 8017 §9.2
            return self._ops.sign(bytes.fromhex(prefix) + digest, pkcs11.Mechanism.RSA_PKCS)
        raise TokenError("unsupported RSA padding for a token key")

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        """RSAES-PKCS1-v1_5 on the token (CKM_RSA_PKCS): the content key of a SCEP answer (RFC 8894
        §3.3.2, ``pki/scep_client.py``); nothing else in ikeguard decrypts with the gateway's key."""
        import pkcs11

        if not isinstance(padding, PKCS1v15):
            raise TokenError("only PKCS#1 v1.5 decryption is used with a token RSA key")
        return self._ops.decrypt(ciphertext, pkcs11.Mechanism.RSA_PKCS)

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _refuse_export()

    def private_bytes(self, encoding: serialization.Encoding, format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        _refuse_export()

    def __copy__(self) -> TokenRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenRsaKey:
        return self

    def __repr__(self) -> str:
        return f"<TokenRsaKey {self._ops.uri.describe()} {self.key_size} bits>"


TokenKey = TokenEcKey | TokenRsaKey


def _public_from_token(ops: _TokenOps, session: Any) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_ec_public_key

    try:
        public = ops.find(session, pkcs11.ObjectClass.PUBLIC_KEY)
    except pkcs11.exceptions.NoSuchKey:
        raise TokenError(f"{ops.uri.describe()}: no public key object beside the private key") from None
    if public.key_type == KeyType.EC:
        loaded = serialization.load_der_public_key(encode_ec_public_key(public))
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise TokenError(f"{ops.uri.describe()}: unreadable EC public key")
        return loaded
    if public.key_type == KeyType.RSA:
        n = int.from_bytes(public[Attribute.MODULUS], "big")
        e = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    raise TokenError(f"{ops.uri.describe()}: key type {public.key_type} is not EC or RSA")


def open_token_key(uri_text: str, base: Path | None = None,
                   log: AccessLog | None = ACCESS_LOG) -> TokenKey:
    """Load the module, log in (PIN from its source), find the key and its public half: a TokenKey.

    Raises TokenError with one line (module missing, token missing, wrong PIN, key missing)."""
    import pkcs11

    uri = parse_uri(uri_text)
    pin = read_pin(uri.pin_source, base)
    try:
        lib = pkcs11.lib(uri.module_path)
    except (RuntimeError, OSError, pkcs11.exceptions.PKCS11Error) as exc:
        raise TokenError(f"cannot load PKCS#11 module {uri.module_path} ({type(exc).__name__})") from None
    kwargs = {_TOKEN_ATTRS[k]: v for k, v in uri.token.items() if k in ("token", "serial")}
    try:
        token = lib.get_token(**kwargs)
    except pkcs11.exceptions.NoSuchToken:
        raise TokenError(f"PKCS#11 token not found: {uri.describe()}") from None
    except pkcs11.exceptions.MultipleTokensReturned:
        raise TokenError(f"several PKCS#11 tokens match {uri.describe()}: add serial=") from None
    except pkcs11.exceptions.PKCS11Error as exc:
        raise TokenError(f"PKCS#11 token {uri.describe()}: {type(exc).__name__}") from None
    pool = SessionPool(token, pin, key=uri.describe(), log=log)
    ops = _TokenOps(pool, uri)
    try:
        with pool.session() as session:
            try:
                ops.find(session, pkcs11.ObjectClass.PRIVATE_KEY)
            except pkcs11.exceptions.NoSuchKey:
                raise TokenError(f"no private key object {uri.describe()} in the token") from None
            except pkcs11.exceptions.MultipleObjectsReturned:
                raise TokenError(f"several private keys match {uri.describe()}: add id=") from None
            public = _public_from_token(ops, session)
    except pkcs11.exceptions.PKCS11Error as exc:
        raise TokenError(f"PKCS#11 token {uri.describe()}: {type(exc).__name__}") from None
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenEcKey(ops, public)
    return TokenRsaKey(ops, public)
