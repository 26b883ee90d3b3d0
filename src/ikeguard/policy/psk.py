"""Pre-shared keys: strongSwan's encodings, and which ``[secrets.ike]`` entry serves which connection.

One implementation for every place that needs a PSK (``service/plan.py`` builds the engine's keys from it,
``policy/checks/secrets.py`` judges the same keys), so the gateway and ``ikeguard check`` never disagree.

Encoding (swanctl.conf(5) ``secrets.ike<suffix>.secret``, as ``swanctl --load-creds`` decodes it): a value
starting with ``0x`` (or ``0X``) is hexadecimal, one starting with ``0s`` (or ``0S``) is base64, anything
else is the UTF-8 text itself. Quoting does not change this: strongSwan's settings parser removes the
quotes before the prefix is looked at, so ``"0x..."`` is binary as well. ikeguard is stricter than
strongSwan where strongSwan would silently produce a different key than the operator meant: a non-hex
digit, a ``:`` that does not separate whole octets, base64 outside the alphabet or with a length that is not
a multiple of four, and an empty key are refused (strongSwan decodes them to zero nibbles or drops
characters). ``secret_file`` holds the same value as ``secret =`` in swanctl.conf: surrounding whitespace
is ignored, and a value in double quotes is unquoted with strongSwan's escapes (``\\n``, ``\\r``, ``\\t``,
``\\<char>``).

Selection (RFC 7296 §2.15: the PSK authenticates one peer's identity). strongSwan ranks secrets by how
well their ids match the remote identity, then the local one; but its responder also tries a secret that
names only its own id, or none, for any peer, which makes such secrets group keys. ikeguard binds a secret
to a connection once, at load time, and only when that is safe:

* the connection's remote id must be exact (a pattern or ``%any`` with PSK lets every peer that knows the
  key claim any matching identity);
* the secret must name the remote id exactly; among those naming it, one that also names the local id
  wins; two equally good secrets are ambiguous and refused;
* a secret without ids serves a connection only when no secret names its remote id, and only one remote
  identity in the whole configuration (else it would be a group key);
* a secret naming only our own ids (or other peers) never serves a connection;
* two connections for different remote identities never resolve to the same secret.

The one exception is explicit and loud: a profile whose ``psk.binding`` rule sets ``allow_group_key`` (only
``baseline``, for labs and load tests) lets a secret *without ids* serve PSK connections whose remote id is
``%any`` or a pattern, or several peers; every such use is a group key (any holder can authenticate as any
identity the connection accepts, and its INITIAL_CONTACT can end another holder's SAs), reported by
``ikeguard check`` as a warning. A secret naming only our own id is never a group key.

Errors name the configuration key and never contain the secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ikeguard.policy.identity import IdentityKind, Precedence, parse_identity
from ikeguard.policy.inventory import IdentityKey, identity_key
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.model import Connection, EapSecret, IkeSecret, PpkSecret
from ikeguard.policy.profile import Profile

_HEX = re.compile(r"[0-9A-Fa-f]+|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")
_B64 = re.compile(r"(?:[A-Za-z0-9+/\-_]{4})*(?:[A-Za-z0-9+/\-_]{2}==|[A-Za-z0-9+/\-_]{3}=)?")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
MAX_SECRET_FILE = 64 * 1024  # a PSK file larger than this is not a PSK file (bounded read)


class PskError(ValueError):
    """A secret that cannot be used; the message names the key, never the secret."""

    def __init__(self, key: str, message: str, *, unreadable: bool = False) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message
        self.unreadable = unreadable  # the file could not be read (files.present reports that)


@dataclass(frozen=True)
class DecodedPsk:
    """A decoded key and how it was written (``text``, ``hex``, ``base64``); the value never in repr."""

    value: bytes
    encoding: str

    def __repr__(self) -> str:
        return f"DecodedPsk(<{len(self.value)} octets>, encoding={self.encoding!r})"


def decode_psk(text: str, key: str) -> DecodedPsk:
    """Decode a swanctl-style secret value: ``0x`` hex, ``0s`` base64, else UTF-8 text (see module doc)."""
    prefix = text[:2].lower()
    body = text[2:]
    if prefix == "0x":
        if not _HEX.fullmatch(body):
            raise PskError(key, "malformed 0x secret: expected hexadecimal digits, optionally as "
                                "colon-separated octets (aa:bb:...)")
        digits = body.replace(":", "")
        if len(digits) % 2:
            digits = "0" + digits  # strongSwan's chunk_from_hex fills from the right
        return DecodedPsk(bytes.fromhex(digits), "hex")
    if prefix == "0s":
        if not body or len(body) % 4 or not _B64.fullmatch(body):
            raise PskError(key, "malformed 0s secret: expected base64 (A-Z a-z 0-9 + / or - _, "
                                "a multiple of 4 characters, '=' padding only at the end)")
        try:
            value = base64.b64decode(body.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise PskError(key, "malformed 0s secret: not valid base64") from None
        return DecodedPsk(value, "base64")
    return DecodedPsk(text.encode("utf-8"), "text")


def unquote_setting(text: str, key: str) -> str:
    """A strongSwan settings value as written after ``secret =``: a double-quoted string is unquoted with
    the settings lexer's escapes (``\\n``, ``\\r``, ``\\t``, escaped newline joins lines, ``\\x`` is ``x``,
    bare CRs dropped); anything else is taken as it is."""
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text
    out: list[str] = []
    body = text[1:-1].replace("\r", "")
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body):
                raise PskError(key, "malformed quoted secret: a backslash ends the string")
            nxt = body[i + 1]
            if nxt != "\n":
                out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            raise PskError(key, 'malformed quoted secret: an unescaped " inside the quotes')
        out.append(c)
        i += 1
    return "".join(out)


def secret_file_value(data: bytes, key: str) -> DecodedPsk:
    """The key in a ``secret_file``'s content (UTF-8, whitespace around it ignored, optionally quoted)."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PskError(key, "the secret file is not UTF-8 text (write binary keys as 0x<hex> or "
                            "0s<base64>)") from None
    return decode_psk(unquote_setting(text, key), key)


def read_secret(config: LoadedConfig, name: str, kind: str = "ike") -> DecodedPsk:
    """The decoded key of ``[secrets.ike.NAME]`` (or ``[secrets.ppk.NAME]`` with ``kind="ppk"``, RFC 8784),
    inline or from its file; PskError names the key."""
    secrets = config.model.secrets
    secret: IkeSecret | PpkSecret | EapSecret = (secrets.ppk[name] if kind == "ppk" else secrets.eap[name]
                                                 if kind == "eap" else secrets.ike[name])
    if not isinstance(secret, EapSecret) and secret.secret is not None:
        value = decode_psk(secret.secret.get_secret_value(), f"secrets.{kind}.{name}.secret")
    else:
        assert secret.secret_file is not None
        key = f"secrets.{kind}.{name}.secret_file"
        try:
            with config.resolve(secret.secret_file).open("rb") as fh:
                data = fh.read(MAX_SECRET_FILE + 1)
        except OSError as exc:
            raise PskError(key, f"cannot read the secret: {type(exc).__name__}", unreadable=True) from None
        if len(data) > MAX_SECRET_FILE:
            raise PskError(key, f"the secret file is larger than {MAX_SECRET_FILE} octets")
        value = secret_file_value(data, key)
    if not value.value:
        raise PskError(f"secrets.{kind}.{name}", "the secret is empty")
    return value


# -- selection ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PskChoice:
    """Which secret serves a PSK connection, or why none may (``problem``, ``key`` it is reported at)."""

    connection: str
    secret: str | None
    problem: str | None = None
    key: str = ""
    remote: IdentityKey | None = None
    group: bool = False  # a no-ids secret used as a group key (only with allow_group_key)


def group_keys_allowed(profile: Profile) -> bool:
    """Whether the profile's ``psk.binding`` rule lets a secret without ids be a group key (baseline)."""
    return any(bool(r.params.get("allow_group_key", False)) for r in profile.rules_for("psk_binding"))


def uses_psk(conn: Connection) -> bool:
    """Whether either side of the connection authenticates with a pre-shared key."""
    return "psk" in (conn.local.auth, conn.remote.auth)


def _keys(ids: Iterable[str]) -> set[IdentityKey]:
    return {identity_key(parse_identity(i)) for i in ids}


def choose_secret(name: str, conn: Connection, secrets: Mapping[str, IkeSecret], *,
                  allow_group_key: bool = False) -> PskChoice:
    """The one secret for ``conn`` alone (the rules of the module docstring, without the cross-connection
    ones that :func:`resolve_psks` adds)."""
    remote = parse_identity(conn.remote.id)
    remote_path = f"connections.{name}.remote.id"
    if remote.kind is IdentityKind.ANY or remote.precedence is not Precedence.EXACT:
        without_ids = [n for n, s in secrets.items() if not s.ids]
        if allow_group_key and len(without_ids) == 1:
            return PskChoice(name, without_ids[0], remote=identity_key(remote), group=True)
        return PskChoice(name, None, f"PSK authentication needs an exact remote id, not {conn.remote.id!r}: "
                         "with a pattern or %any every peer that knows the key could claim any matching "
                         "identity", remote_path)
    want = identity_key(remote)
    local = identity_key(parse_identity(conn.local.id)) if conn.local.id else None
    ranked: dict[int, list[str]] = {}
    unbound: list[str] = []
    for secret_name, secret in secrets.items():
        keys = _keys(secret.ids)
        if not keys:
            unbound.append(secret_name)
        elif want in keys:
            ranked.setdefault(2 if local is not None and local in keys else 1, []).append(secret_name)
    if ranked:
        best = ranked[max(ranked)]
        if len(best) > 1:
            return PskChoice(name, None, f"secrets {', '.join(best)} all name {conn.remote.id!r} equally: "
                             "give this peer exactly one secret", remote_path, want)
        return PskChoice(name, best[0], remote=want)
    if len(unbound) == 1:
        return PskChoice(name, unbound[0], remote=want)
    if unbound:
        return PskChoice(name, None, f"no secret names {conn.remote.id!r} and several secrets have no ids "
                         f"({', '.join(unbound)})", remote_path, want)
    return PskChoice(name, None, f"auth = \"psk\" but no [secrets.ike] entry names {conn.remote.id!r} "
                     "(a secret naming only our own id is never used for a peer)", remote_path, want)


def resolve_psks(config: LoadedConfig, names: Iterable[str], *,
                 allow_group_key: bool = False) -> dict[str, PskChoice]:
    """Choose the secret of every PSK connection among ``names`` and refuse every choice that lets one
    peer's secret serve another remote identity (a shared secret is reported on each connection), unless
    ``allow_group_key`` and the secret has no ids (then each choice is marked ``group``)."""
    model = config.model
    choices = {n: choose_secret(n, model.connections[n], model.secrets.ike, allow_group_key=allow_group_key)
               for n in names if uses_psk(model.connections[n])}
    users: dict[str, list[PskChoice]] = {}
    for choice in choices.values():
        if choice.secret is not None:
            users.setdefault(choice.secret, []).append(choice)
    for secret_name, chosen in users.items():
        remotes = {c.remote for c in chosen}
        if len(remotes) < 2:
            continue
        if allow_group_key and not model.secrets.ike[secret_name].ids:
            for c in chosen:
                choices[c.connection] = replace(c, group=True)
            continue
        conns = ", ".join(f"{c.connection} ({model.connections[c.connection].remote.id})" for c in chosen)
        how = "has no ids" if not model.secrets.ike[secret_name].ids else "is chosen"
        for c in chosen:
            choices[c.connection] = PskChoice(
                c.connection, None, f"secret {secret_name!r} {how} for connections of different peers: "
                f"{conns}; each peer could authenticate as the others", f"secrets.ike.{secret_name}",
                c.remote)
    return choices
