"""ikeguard gateway configuration (TOML, docs/reference.md) from Python parameters, for tests.

Mirrors swanctl_conf.py so an interop test writes the ikeguard side and the strongSwan side of one scenario
side by side (``IkgConnection`` next to ``ConnectionConfig``, ``IkgChild`` next to ``ChildConfig`` ...).
Written by hand: the TOML needed here (strings, numbers, booleans, string arrays, nested tables and arrays of
tables) is small, and the output is read back with tomllib in the tests. Fields left at None are not written,
so the gateway's own defaults apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "IkgAuthority",
    "IkgChild",
    "IkgConnection",
    "IkgLocal",
    "IkgPeer",
    "IkgRemote",
    "IkgSecret",
    "gateway_toml",
    "peers_toml",
    "secret_files",
    "to_toml",
]

Scalar = str | int | float | bool
Value = Scalar | Sequence[Scalar]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _string(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped, everything else literal."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)  # fullmatch: "$" would accept a trailing "\n"


def _scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _string(value)


def _value(value: Value) -> str:
    if isinstance(value, str | int | float | bool):
        return _scalar(value)
    return "[" + ", ".join(_scalar(v) for v in value) + "]"


def _is_table_list(value: object) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, Mapping) for v in value)


def to_toml(tree: Mapping[str, object], _path: tuple[str, ...] = ()) -> str:
    """A nested mapping as TOML: scalars, then sub-tables, then arrays of tables; None values left out."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, object]]] = []
    table_lists: list[tuple[str, Sequence[Mapping[str, object]]]] = []
    for key, value in tree.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif _is_table_list(value):
            table_lists.append((key, value))  # type: ignore[arg-type]
        else:
            lines.append(f"{_key(key)} = {_value(value)}")  # type: ignore[arg-type]
    out = "\n".join(lines)
    for key, sub in tables:
        path = (*_path, key)
        body = to_toml(sub, path)
        has_scalars = any(v is not None and not isinstance(v, Mapping) and not _is_table_list(v)
                          for v in sub.values())
        header = f"[{'.'.join(_key(p) for p in path)}]" if has_scalars or not sub else ""
        out += ("\n\n" if out else "") + (header + "\n" if header else "") + body
    for key, items in table_lists:
        path = (*_path, key)
        for item in items:
            out += ("\n\n" if out else "") + f"[[{'.'.join(_key(p) for p in path)}]]\n" + to_toml(item, path)
    return out.strip("\n")


def _drop_none(tree: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in tree.items() if v is not None}


@dataclass(frozen=True)
class IkgLocal:
    """``connections.NAME.local``: how the gateway authenticates (files are paths relative to the config)."""

    auth: str = "pubkey"  # pubkey | psk
    id: str | None = None
    certs: Sequence[str] = ()
    key: str | None = None
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        return _drop_none({"auth": self.auth, "id": self.id, "certs": list(self.certs) or None,
                           "key": self.key, **self.extra})


@dataclass(frozen=True)
class IkgRemote:
    """``connections.NAME.remote``: how the peer must authenticate (cacerts = authority names or files)."""

    auth: str = "pubkey"
    id: str | None = None
    cacerts: Sequence[str] = ()
    revocation: str | None = None  # strict | ifuri | relaxed
    cert_policy: Sequence[str] = ()
    peers: str | None = None  # a peer inventory file (see peers_toml)
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        return _drop_none({
            "auth": self.auth, "id": self.id, "cacerts": list(self.cacerts) or None,
            "revocation": self.revocation, "cert_policy": list(self.cert_policy) or None, "peers": self.peers,
            **self.extra,
        })


@dataclass(frozen=True)
class IkgChild:
    """``connections.NAME.children.NAME``: a Child SA policy (names as in swanctl.conf)."""

    name: str = "net"
    local_ts: Sequence[str] = ("dynamic",)
    remote_ts: Sequence[str] = ("dynamic",)
    esp_proposals: Sequence[str] = ("aes256gcm16-ecp384",)
    mode: str | None = None
    start_action: str | None = None  # none | start | trap
    dpd_action: str | None = None
    close_action: str | None = None
    rekey_time: str | int | None = None
    life_time: str | int | None = None
    rand_time: str | int | None = None
    rekey_bytes: str | int | None = None
    life_bytes: str | int | None = None
    rekey_packets: str | int | None = None
    life_packets: str | int | None = None
    replay_window: int | None = None
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        return _drop_none({
            "local_ts": list(self.local_ts), "remote_ts": list(self.remote_ts),
            "esp_proposals": list(self.esp_proposals), "mode": self.mode, "start_action": self.start_action,
            "dpd_action": self.dpd_action, "close_action": self.close_action, "rekey_time": self.rekey_time,
            "life_time": self.life_time, "rand_time": self.rand_time, "rekey_bytes": self.rekey_bytes,
            "life_bytes": self.life_bytes, "rekey_packets": self.rekey_packets,
            "life_packets": self.life_packets, "replay_window": self.replay_window, **self.extra,
        })


@dataclass(frozen=True)
class IkgConnection:
    """``[connections.NAME]``: an IKE SA policy with its auth rounds and children."""

    name: str = "ikg"
    local_addrs: Sequence[str] = ()
    remote_addrs: Sequence[str] = ()
    local: IkgLocal = field(default_factory=IkgLocal)
    remote: IkgRemote = field(default_factory=IkgRemote)
    children: Sequence[IkgChild] = (IkgChild(),)
    proposals: Sequence[str] = ("aes256gcm16-prfsha384-ecp384",)
    rekey_time: str | int | None = None
    reauth_time: str | int | None = None
    over_time: str | int | None = None
    rand_time: str | int | None = None
    dpd_delay: str | int | None = None
    dpd_timeout: str | int | None = None
    mobike: bool | None = None
    fragmentation: bool | str | None = None
    encap: bool | None = None
    unique: str | None = None
    if_id: int | None = None
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        out = _drop_none({
            "local_addrs": list(self.local_addrs) or None, "remote_addrs": list(self.remote_addrs) or None,
            "proposals": list(self.proposals), "rekey_time": self.rekey_time, "reauth_time": self.reauth_time,
            "over_time": self.over_time, "rand_time": self.rand_time, "dpd_delay": self.dpd_delay,
            "dpd_timeout": self.dpd_timeout, "mobike": self.mobike, "fragmentation": self.fragmentation,
            "encap": self.encap, "unique": self.unique, "if_id": self.if_id, **self.extra,
        })
        out["local"] = self.local.tree()
        out["remote"] = self.remote.tree()
        out["children"] = {child.name: child.tree() for child in self.children}
        return out


@dataclass(frozen=True)
class IkgSecret:
    """``[secrets.ike.NAME]``: a PSK for exact identities; by default in a 0600 file (profiles forbid inline).

    With ``in_file`` the TOML names ``secrets/<name>.psk`` and `secret_files()` yields that file's content.
    """

    name: str
    ids: Sequence[str]
    secret: str = field(repr=False)
    in_file: bool = True

    @property
    def file(self) -> str:
        return f"secrets/{self.name}.psk"

    def tree(self) -> dict[str, object]:
        out: dict[str, object] = {"ids": list(self.ids)}
        if self.in_file:
            out["secret_file"] = self.file
        else:
            out["secret"] = self.secret
        return out


@dataclass(frozen=True)
class IkgAuthority:
    """``[authorities.NAME]``: a trust anchor (file relative to the config) and its revocation sources."""

    name: str
    cacert: str
    crls: Sequence[str] = ()
    crl_uris: Sequence[str] = ()
    ocsp_uris: Sequence[str] = ()

    def tree(self) -> dict[str, object]:
        return _drop_none({
            "cacert": self.cacert, "crls": list(self.crls) or None,
            "crl_uris": list(self.crl_uris) or None, "ocsp_uris": list(self.ocsp_uris) or None,
        })


@dataclass(frozen=True)
class IkgPeer:
    """One ``[[peer]]`` of a peer inventory: an exact identity and what ``%peer`` means for it."""

    id: str
    remote_ts: Sequence[str]
    enabled: bool = True
    ticket: str | None = None

    def tree(self) -> dict[str, object]:
        return _drop_none({"id": self.id, "remote_ts": list(self.remote_ts), "enabled": self.enabled,
                           "ticket": self.ticket})


def gateway_toml(
    connections: Sequence[IkgConnection] = (),
    *,
    profile: str | None = "baseline",
    dataplane: str | None = "none",
    listen: Sequence[str] | None = ("192.0.2.1",),
    state_dir: str | None = "state",
    on_violation: str | None = None,
    secrets: Sequence[IkgSecret] = (),
    authorities: Sequence[IkgAuthority] = (),
    gateway: Mapping[str, Value] | None = None,
    audit: Mapping[str, object] | None = None,
    waivers: Sequence[Mapping[str, Value]] = (),
    ppks: Mapping[str, Mapping[str, Value]] | None = None,
) -> str:
    """The text of an ikeguard gateway config (``gateway.toml``); `gateway` adds/overrides [gateway] keys."""
    gw: dict[str, object] = _drop_none({
        "profile": profile, "on_violation": on_violation, "state_dir": state_dir, "dataplane": dataplane,
        "listen": list(listen) if listen is not None else None,
    })
    gw.update(gateway or {})
    tree: dict[str, object] = {"gateway": gw}
    if audit:
        tree["audit"] = dict(audit)
    if authorities:
        tree["authorities"] = {a.name: a.tree() for a in authorities}
    if connections:
        tree["connections"] = {c.name: c.tree() for c in connections}
    if secrets or ppks:
        tree["secrets"] = {"ike": {s.name: s.tree() for s in secrets}} if secrets else {}
        if ppks:  # [secrets.ppk.NAME] (RFC 8784)
            tree["secrets"]["ppk"] = {name: dict(v) for name, v in ppks.items()}  # type: ignore[index]
    if waivers:
        tree["waivers"] = [dict(w) for w in waivers]
    return to_toml(tree) + "\n"


def peers_toml(peers: Sequence[IkgPeer]) -> str:
    """The text of a peer inventory file (``[[peer]]`` tables)."""
    return to_toml({"peer": [p.tree() for p in peers]}) + "\n" if peers else ""


def secret_files(secrets: Sequence[IkgSecret]) -> dict[str, str]:
    """The files GatewayProcess must write for secrets kept in files (path relative to the config -> PSK)."""
    return {s.file: s.secret + "\n" for s in secrets if s.in_file}
