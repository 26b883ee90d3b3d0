"""strongSwan configuration model and writers: `strongswan.conf` and `swanctl.conf` from Python parameters.

Written by hand (the settings syntax is small: ``key = value`` and ``name { ... }``). The option names are
strongSwan's (swanctl.conf(5), strongswan.conf(5)); see docs/interop.md for why each
daemon-level line is there (kernel-libipsec before kernel-netlink, private vici socket, filelog, no journal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_PLUGINS",
    "AuthConfig",
    "ChildConfig",
    "ConnectionConfig",
    "PskSecret",
    "render",
    "strongswan_conf",
    "swanctl_conf",
]

# Order matters: kernel-libipsec must come before kernel-netlink (first kernel-ipsec provider wins).
DEFAULT_PLUGINS: tuple[str, ...] = (
    *("random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "pubkey", "constraints", "revocation"),
    *("curve25519", "gcm", "aes", "sha1", "sha2", "hmac", "kdf", "kernel-libipsec", "kernel-netlink"),
    *("socket-default", "vici", "updown"),
)

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@,+*%=\-\[\]]*$")
Value = str | int | bool | Sequence[str]
Tree = Mapping[str, "Value | Tree"]


def _value(value: Value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    text = value if isinstance(value, str) else ",".join(value)
    if _SAFE_VALUE.match(text) and text:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(tree: Tree, indent: int = 0) -> str:
    """Serialize a nested mapping in strongSwan settings syntax; None values are left out."""
    pad = "    " * indent
    lines: list[str] = []
    for key, value in tree.items():
        if value is None:
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
            raise ValueError(f"bad settings key {key!r}")
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{")
            lines.append(render(value, indent + 1))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key} = {_value(value)}")
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class AuthConfig:
    """One auth round (swanctl ``local``/``remote`` section): method, identity and certificates."""

    auth: str = "pubkey"  # pubkey | psk | eap-... ; for remote also "pubkey" to require a certificate
    id: str | None = None
    certs: Sequence[str] = ()  # file names in SWANCTL_DIR/x509 (local side)
    cacerts: Sequence[str] = ()  # file names in SWANCTL_DIR/x509ca that must anchor the peer's chain (remote)
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        out: dict[str, object] = {"auth": self.auth, "id": self.id}
        if self.certs:
            out["certs"] = list(self.certs)
        if self.cacerts:
            out["cacerts"] = list(self.cacerts)
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ChildConfig:
    """A swanctl ``children`` entry (CHILD_SA config)."""

    name: str = "net"
    local_ts: Sequence[str] = ("dynamic",)
    remote_ts: Sequence[str] = ("dynamic",)
    esp_proposals: Sequence[str] = ("aes256gcm16-ecp384",)
    mode: str = "tunnel"
    start_action: str = "none"  # none | trap | start
    dpd_action: str | None = None
    close_action: str | None = None
    rekey_time: str | None = None  # swanctl durations: "1h", "90s", "0" disables
    life_time: str | None = None
    rand_time: str | None = None
    rekey_bytes: int | None = None
    rekey_packets: int | None = None
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        out: dict[str, object] = {
            "local_ts": list(self.local_ts),
            "remote_ts": list(self.remote_ts),
            "esp_proposals": list(self.esp_proposals),
            "mode": self.mode,
            "start_action": self.start_action,
            "dpd_action": self.dpd_action,
            "close_action": self.close_action,
            "rekey_time": self.rekey_time,
            "life_time": self.life_time,
            "rand_time": self.rand_time,
            "rekey_bytes": self.rekey_bytes,
            "rekey_packets": self.rekey_packets,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ConnectionConfig:
    """A swanctl ``connections`` entry (IKE_SA config with its auth rounds and children)."""

    name: str = "ikg"
    local_addrs: Sequence[str] = ()
    remote_addrs: Sequence[str] = ()
    local: AuthConfig = field(default_factory=AuthConfig)
    remote: AuthConfig = field(default_factory=AuthConfig)
    children: Sequence[ChildConfig] = (ChildConfig(),)
    proposals: Sequence[str] = ("aes256gcm16-prfsha384-ecp384",)
    version: int = 2
    local_port: int | None = None
    remote_port: int | None = None
    rekey_time: str | None = None
    reauth_time: str | None = None
    over_time: str | None = None
    rand_time: str | None = None
    dpd_delay: str | None = None
    dpd_timeout: str | None = None
    mobike: bool | None = None
    encap: bool | None = True  # libipsec does ESP-in-UDP only
    fragmentation: str | None = None  # yes | accept | force | no
    unique: str | None = None  # no | never | keep | replace
    keyingtries: int | None = None
    send_certreq: bool | None = None
    send_cert: str | None = None  # always | ifasked | never
    extra: Mapping[str, Value] = field(default_factory=dict)

    def tree(self) -> dict[str, object]:
        out: dict[str, object] = {
            "version": self.version,
            "local_addrs": list(self.local_addrs) or None,
            "remote_addrs": list(self.remote_addrs) or None,
            "local_port": self.local_port,
            "remote_port": self.remote_port,
            "proposals": list(self.proposals),
            "rekey_time": self.rekey_time,
            "reauth_time": self.reauth_time,
            "over_time": self.over_time,
            "rand_time": self.rand_time,
            "dpd_delay": self.dpd_delay,
            "dpd_timeout": self.dpd_timeout,
            "mobike": self.mobike,
            "encap": self.encap,
            "fragmentation": self.fragmentation,
            "unique": self.unique,
            "keyingtries": self.keyingtries,
            "send_certreq": self.send_certreq,
            "send_cert": self.send_cert,
        }
        rounds = {k: v for k, v in self.extra.items() if k.startswith(("local-", "remote-"))}
        out.update({k: v for k, v in self.extra.items() if k not in rounds})
        out["local"] = self.local.tree()
        out["remote"] = self.remote.tree()
        out.update(rounds)  # local-2/remote-2 after round 1: swanctl takes the rounds in file order
        out["children"] = {child.name: child.tree() for child in self.children}
        return out


@dataclass(frozen=True)
class PskSecret:
    """A swanctl ``secrets { ike-N { id-M = ...; secret = ... } }`` entry; the secret never shows in repr."""

    ids: Sequence[str]
    secret: str = field(repr=False)
    kind: str = "ike"  # "ppk" for an RFC 8784 post-quantum preshared key (secrets.ppk-N, strongSwan >= 5.7)

    def tree(self) -> dict[str, object]:
        out: dict[str, object] = {f"id-{i}": ident for i, ident in enumerate(self.ids)}
        out["secret"] = self.secret
        return out


def swanctl_conf(connections: Sequence[ConnectionConfig], psks: Sequence[PskSecret] = ()) -> str:
    """The text of ``swanctl.conf``."""
    tree: dict[str, object] = {"connections": {c.name: c.tree() for c in connections}}
    if psks:
        tree["secrets"] = {f"{p.kind}-{i}": p.tree() for i, p in enumerate(psks)}
    return render(tree) + "\n"  # type: ignore[arg-type]


def strongswan_conf(
    *,
    vici_uri: str,
    log_path: Path,
    plugins: Sequence[str] = DEFAULT_PLUGINS,
    log_level: int = 2,
    charon_options: Mapping[str, object] | None = None,
) -> str:
    """The text of a private ``strongswan.conf`` (no include of /etc/strongswan.d)."""
    charon: dict[str, object] = {
        "load": " ".join(plugins),
        "install_routes": True,
        "routing_table": 220,
        "routing_table_prio": 220,
        "plugins": {
            "vici": {"socket": vici_uri},
            "kernel-libipsec": {"allow_peer_ts": False},
        },
        "filelog": {
            "ikg": {
                "path": str(log_path),
                "time_format": "%b %e %T",
                "ike_name": True,
                "append": False,
                "flush_line": True,
                "default": log_level,
            },
        },
    }
    for key, value in (charon_options or {}).items():
        _merge(charon, key.split("."), value)
    tree: dict[str, object] = {
        "charon": charon,
        "charon-systemd": {"journal": {"default": -1}},
        "swanctl": {"socket": vici_uri},
    }
    return render(tree) + "\n"  # type: ignore[arg-type]


def _merge(tree: dict[str, object], path: list[str], value: object) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"option {'.'.join(path)} collides with a value")
        node = child
    node[path[-1]] = value
