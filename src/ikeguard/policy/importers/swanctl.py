"""``swanctl.conf`` (strongSwan's settings tree, :mod:`.settings_syntax`) to an ikeguard configuration tree.

Every key is either translated (same meaning, swanctl.conf(5) semantics) or listed as ``Unmapped`` with the
reason; nothing is dropped silently. The result is validated against ikeguard's configuration model key by
key: a value the model refuses is taken out and listed too, so the TOML written always loads; whether it
passes a compliance profile is the migration report's other half (``ikeguard check``'s findings).

File layout as swanctl's (swanctl(8) "FILES"): ``certs`` in ``x509/``, ``cacerts`` and authorities' ``cacert``
in ``x509ca/``, private keys in ``private/``, ``rsa/``, ``ecdsa/``, ``pkcs8/`` (found by matching the
certificate's public key, as charon does), all relative to the swanctl directory unless absolute. PSKs
(``secrets.ike*``) are written to their own 0600 files (``secret_file``) unchanged, ``0x``/``0s`` prefix
included (ikeguard decodes them as swanctl does, :mod:`ikeguard.policy.psk`); they never appear in the report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ikeguard.policy.importers.settings_syntax import Located, Tree
from ikeguard.policy.importers.toml_out import dump_toml  # re-exported for the CLI

KEY_DIRS = ("private", "rsa", "ecdsa", "pkcs8")
_DURATION = re.compile(r"^\d+[smhd]?$")
_SIZE = re.compile(r"^\d+[KMGTkmgt]?$")
_PUBKEY_PREFIXES = ("pubkey-", "rsa-", "ecdsa-", "rsa/pss")
_BOOL = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@dataclass(frozen=True)
class Unmapped:
    """A swanctl.conf key without an ikeguard equivalent (or a value ikeguard refuses)."""

    key: str
    value: str
    reason: str
    where: str = ""

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"key": self.key, "value": self.value, "reason": self.reason, "where": self.where}


@dataclass
class ImportResult:
    """The configuration tree, secret files to write beside it, and what could not be carried over."""

    config: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # file name (beside the output) -> content
    unmapped: list[Unmapped] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # connections not imported (and why, in unmapped)
    flavour: str = "swanctl"  # the source: swanctl (swanctl.conf), strongswan or libreswan (ipsec.conf)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _secret_value(value: str) -> str:
    """A secret file's content: the value unchanged; quoted (strongSwan escapes) when blanks would be lost."""
    if value != value.strip() or value.startswith('"') or "\n" in value:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"\n'
    return value + "\n"


class _Converter:
    def __init__(self, tree: Tree, located: Located, swanctl_dir: Path, output_dir: Path,
                 radius: Mapping[str, Any] | None = None) -> None:
        self.tree, self.located = tree, located
        self.radius = dict(radius or {})
        self.dir, self.out = swanctl_dir, output_dir
        self.result = ImportResult(config={})
        self._keys: list[tuple[Path, Any]] | None = None

    # -- helpers ------------------------------------------------------------------------------------------
    def unmapped(self, key: str, value: object, reason: str) -> None:
        shown = "(section)" if isinstance(value, dict) else str(value)
        if re.search(r"(^|\.)(secret|pin)$", key):
            shown = "(not shown)"
        self.result.unmapped.append(Unmapped(key, shown[:200], reason, self.located.lines.get(key, "")))

    def path(self, value: str, subdir: str) -> str:
        p = Path(value)
        target = p if p.is_absolute() else self.dir / subdir / p
        return os.path.relpath(target, self.out)

    def duration(self, key: str, value: str) -> int | str | None:
        v = value.strip()
        if v.isdigit():
            return int(v)
        if _DURATION.match(v):
            return v
        self.unmapped(key, value, "not a duration ikeguard reads (seconds or 90s, 30m, 8h, 1d)")
        return None

    def size(self, key: str, value: str) -> int | str | None:
        v = value.strip()
        if v.isdigit():
            return int(v)
        if _SIZE.match(v):
            return v
        self.unmapped(key, value, "not a size ikeguard reads")
        return None

    def boolean(self, key: str, value: str) -> bool | None:
        b = _BOOL.get(value.strip().lower())
        if b is None:
            self.unmapped(key, value, "not yes/no")
        return b

    # -- top level ----------------------------------------------------------------------------------------
    def convert(self, gateway: dict[str, Any]) -> ImportResult:
        cfg = self.result.config
        cfg["gateway"] = gateway
        for top, value in self.tree.items():
            if top == "connections" and isinstance(value, dict):
                continue
            if top == "authorities" and isinstance(value, dict):
                continue
            if top == "secrets" and isinstance(value, dict):
                continue
            if top == "pools" and isinstance(value, dict):
                cfg["pools"] = {n: p for n, p in ((n, self.pool(n, v)) for n, v in value.items()) if p}
                continue
            self.unmapped(top, value, "unknown top-level key")
        authorities = self.tree.get("authorities")
        if isinstance(authorities, dict):
            cfg["authorities"] = {n: a for n, s in authorities.items()
                                  if (a := self.authority(n, s)) is not None}
        connections = self.tree.get("connections")
        cfg["connections"] = {}
        if isinstance(connections, dict):
            for name, section in connections.items():
                conn = self.connection(name, section) if isinstance(section, dict) else None
                if conn is not None:
                    cfg["connections"][name] = conn
        secrets = self.tree.get("secrets")
        if isinstance(secrets, dict):
            ike = {}
            for name, section in secrets.items():
                entry = self.secret(name, section)
                if entry is not None:
                    ike[entry[0]] = entry[1]
            if ike:
                cfg["secrets"] = {"ike": ike}
        if self.radius and any(c.get("remote", {}).get("auth") == "eap-radius" or "remote-2" in c
                               for c in cfg["connections"].values()):
            cfg["radius"] = self.radius
        self.validate()
        return self.result

    def authority(self, name: str, section: str | Tree) -> dict[str, Any] | None:
        key = f"authorities.{name}"
        if not isinstance(section, dict):
            self.unmapped(key, section, "not a section")
            return None
        out: dict[str, Any] = {}
        for k, v in section.items():
            if k == "cacert" and isinstance(v, str):
                out["cacert"] = self.path(v, "x509ca")
            elif k in ("crl_uris", "ocsp_uris") and isinstance(v, str):
                out[k] = _list(v)
            else:
                self.unmapped(f"{key}.{k}", v, "no equivalent (file/handle/slot/module, cert_uri_base)")
        if "cacert" not in out:
            self.unmapped(key, "", "an authority without cacert (file) cannot be imported")
            return None
        return out

    # -- connections --------------------------------------------------------------------------------------
    _CONN_DURATIONS = ("rekey_time", "reauth_time", "over_time", "rand_time", "dpd_delay", "dpd_timeout")

    def connection(self, name: str, section: Tree) -> dict[str, Any] | None:
        key = f"connections.{name}"
        version = section.get("version", "0")
        if isinstance(version, str) and version.strip().lower() in ("1", "ikev1"):
            self.unmapped(f"{key}.version", version, "IKEv1 is not supported: connection not imported")
            self.result.skipped.append(name)
            return None
        locals_ = sorted(k for k in section if k == "local" or k.startswith("local-"))
        remotes = sorted(k for k in section if k == "remote" or k.startswith("remote-"))
        for rounds, side in ((locals_, "local"), (remotes[1:], "remote")):
            for extra in rounds[1:]:
                self.unmapped(f"{key}.{extra}", section[extra],
                              f"a further {side} authentication round has no equivalent (ikeguard: one local "
                              "round; remote and remote-2 = EAP of the user after the device)")
        local_section = section.get(locals_[0]) if locals_ else {}
        remote_section = section.get(remotes[0]) if remotes else {}
        local_auth = self.local(f"{key}.{locals_[0] if locals_ else 'local'}",
                                local_section if isinstance(local_section, dict) else {})
        remote_auth = self.remote(f"{key}.{remotes[0] if remotes else 'remote'}",
                                  remote_section if isinstance(remote_section, dict) else {})
        remote_2 = None
        if len(remotes) > 1 and isinstance(section[remotes[1]], dict):
            remote_2 = self.remote(f"{key}.{remotes[1]}", section[remotes[1]])  # type: ignore[arg-type]
        if local_auth is None or remote_auth is None or (len(remotes) > 1 and remote_2 is None):
            self.result.skipped.append(name)
            return None
        out: dict[str, Any] = {}
        if_ids: dict[str, str] = {}
        for k, v in section.items():
            full = f"{key}.{k}"
            if k in locals_ or k in remotes or k == "version":
                continue
            if k == "children" and isinstance(v, dict):
                continue
            if not isinstance(v, str):
                self.unmapped(full, v, "unknown section")
                continue
            if k in ("local_addrs", "remote_addrs"):
                out[k] = _list(v)
            elif k == "proposals":
                items = [p for p in _list(v) if p.lower() != "default"]
                if len(items) != len(_list(v)):
                    self.unmapped(full, v, "'default' means strongSwan's default set: ikeguard uses its own "
                                           "default proposal instead")
                if items:
                    out[k] = items
            elif k in self._CONN_DURATIONS:
                d = self.duration(full, v)
                if d is not None:
                    out[k] = d
            elif k in ("mobike", "encap"):
                b = self.boolean(full, v)
                if b is not None:
                    out[k] = b
            elif k == "fragmentation" or k == "unique":
                out[k] = v.strip().lower()
            elif k == "ocsp" and v.strip().lower() in ("never", "reply", "request", "both"):
                out[k] = v.strip().lower()  # RFC 4806 (docs/pki.md); strongSwan's default: reply, ours: never
            elif k == "pools":
                out[k] = _list(v)
            elif k in ("if_id_in", "if_id_out"):
                if_ids[k] = v.strip()
            else:
                self.unmapped(full, v, "no equivalent in ikeguard")
        if if_ids:
            values = set(if_ids.values())
            if len(values) == 1 and len(if_ids) == 2:
                try:
                    out["if_id"] = int(values.pop(), 0)
                except ValueError:
                    self.unmapped(f"{key}.if_id_in", if_ids["if_id_in"], "not a number")
            else:
                for k, v in if_ids.items():
                    self.unmapped(f"{key}.{k}", v, "ikeguard has one if_id for both directions")
        out["local"] = local_auth
        out["remote"] = remote_auth
        if remote_2 is not None:
            out["remote-2"] = remote_2
        children = section.get("children")
        out["children"] = {}
        if isinstance(children, dict):
            for cname, csection in children.items():
                if not isinstance(csection, dict):
                    self.unmapped(f"{key}.children.{cname}", csection, "not a section")
                    continue
                child = self.child(f"{key}.children.{cname}", csection)
                if child is not None:
                    out["children"][cname] = child
        return out

    def _auth_method(self, key: str, value: str, *, remote: bool = False) -> str | None:
        v = value.strip().lower()
        if v == "psk":
            return "psk"
        if remote and (v == "eap" or v.startswith("eap-")):
            if not self.radius:
                self.unmapped(key, value, "ikeguard relays EAP to a RADIUS server: import again with "
                                          "--radius-server ADDRESS --radius-secret-file FILE: connection not "
                                          "imported")
                return None
            if v not in ("eap-radius", "eap", "eap-dynamic"):
                self.unmapped(key, value, "imported as eap-radius: the EAP method is the RADIUS server's to "
                                          "choose (configure it there)")
            return "eap-radius"
        if v in ("pubkey", "rsa", "ecdsa", "ed25519") or v.startswith(_PUBKEY_PREFIXES):
            if v not in ("pubkey", "rsa", "ecdsa"):
                self.unmapped(key, value, "signature scheme restrictions follow the profile "
                                          "(auth.signature), imported as pubkey")
            return "pubkey"
        self.unmapped(key, value, "only pubkey and psk authentication exist in ikeguard (no EAP, XAuth): "
                                  "connection not imported")
        return None

    def local(self, key: str, section: Tree) -> dict[str, Any] | None:
        auth = self._auth_method(f"{key}.auth", str(section.get("auth", "pubkey")))
        if auth is None:
            return None
        out: dict[str, Any] = {"auth": auth}
        certs: list[str] = []
        for k, v in section.items():
            full = f"{key}.{k}"
            if k == "auth":
                continue
            if k == "id" and isinstance(v, str):
                out["id"] = v
            elif k == "certs" and isinstance(v, str):
                certs += _list(v)
            elif k.startswith("cert") and isinstance(v, dict) and isinstance(v.get("file"), str):
                certs.append(str(v["file"]))
            else:
                self.unmapped(full, v, "no equivalent in ikeguard")
        if certs:
            out["certs"] = [self.path(c, "x509") for c in certs]
        if auth == "pubkey":
            if not certs:
                self.unmapped(f"{key}.certs", "", "pubkey authentication needs a certificate: connection not "
                                                  "imported")
                return None
            keyfile = self.private_key_for(self.dir / "x509" / certs[0] if not Path(certs[0]).is_absolute()
                                           else Path(certs[0]))
            if keyfile is None:
                self.unmapped(f"{key}.certs", certs[0], "no private key for this certificate in private/, "
                                                        "rsa/, ecdsa/ or pkcs8/: set local.key by hand")
                out["key"] = os.path.relpath(self.dir / "private" / (Path(certs[0]).stem + ".pem"), self.out)
            else:
                out["key"] = os.path.relpath(keyfile, self.out)
        return out

    def remote(self, key: str, section: Tree) -> dict[str, Any] | None:
        auth = self._auth_method(f"{key}.auth", str(section.get("auth", "pubkey")), remote=True)
        if auth is None:
            return None
        out: dict[str, Any] = {"auth": auth}
        cacerts: list[str] = []
        for k, v in section.items():
            full = f"{key}.{k}"
            if k == "auth":
                continue
            if not isinstance(v, str):
                if k.startswith("cacert") and isinstance(v, dict) and isinstance(v.get("file"), str):
                    cacerts.append(str(v["file"]))
                else:
                    self.unmapped(full, v, "no equivalent in ikeguard")
                continue
            if k == "id":
                out["id"] = v
            elif k == "cacerts":
                cacerts += _list(v)
            elif k == "eap_id":
                out["eap_id"] = v
            elif k == "revocation":
                out["revocation"] = v.strip().lower()
            elif k == "cert_policy":
                out["cert_policy"] = _list(v)
            else:
                self.unmapped(full, v, "no equivalent in ikeguard (certs/pubkeys pinning, groups, eap_id)")
        if cacerts:
            out["cacerts"] = [self.path(c, "x509ca") for c in cacerts]
        elif auth == "pubkey":
            anchors = sorted(p for p in (self.dir / "x509ca").glob("*") if p.is_file())
            if anchors:
                out["cacerts"] = [os.path.relpath(p, self.out) for p in anchors]
                self.unmapped(f"{key}.cacerts", "", "not set: swanctl trusts every CA in x509ca/; imported "
                                                    "as that explicit list (narrow it)")
        return out

    _CHILD_DURATIONS = ("rekey_time", "life_time", "rand_time")
    _CHILD_SIZES = ("rekey_bytes", "life_bytes", "rekey_packets", "life_packets")

    def child(self, key: str, section: Tree) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for k, v in section.items():
            full = f"{key}.{k}"
            if not isinstance(v, str):
                self.unmapped(full, v, "unknown section")
                continue
            low = v.strip().lower()
            if k in ("local_ts", "remote_ts"):
                out[k] = _list(v)
            elif k == "esp_proposals":
                items = [p for p in _list(v) if p.lower() != "default"]
                if len(items) != len(_list(v)):
                    self.unmapped(full, v, "'default' means strongSwan's default set: ikeguard uses its own")
                if items:
                    out[k] = items
            elif k == "ah_proposals":
                self.unmapped(full, v, "AH is not supported (ESP only): child not imported")
                return None
            elif k in self._CHILD_DURATIONS:
                d = self.duration(full, v)
                if d is not None:
                    out[k] = d
            elif k in self._CHILD_SIZES:
                s = self.size(full, v)
                if s is not None:
                    out[k] = s
            elif k == "replay_window":
                if v.strip().isdigit():
                    out[k] = int(v.strip())
                else:
                    self.unmapped(full, v, "not a number")
            elif k == "mode":
                if low in ("tunnel", "transport"):
                    out[k] = low
                else:
                    self.unmapped(full, v, "only tunnel and transport mode exist in ikeguard: child not "
                                           "imported")
                    return None
            elif k == "start_action":
                actions = set(low.split("|"))
                if "start" in actions and len(actions) > 1:
                    self.unmapped(full, v, "one start_action only: imported as 'start'")
                out[k] = "start" if "start" in actions else low
            elif k in ("dpd_action", "close_action"):
                out[k] = low
            else:
                self.unmapped(full, v, "no equivalent in ikeguard")
        return out

    def pool(self, name: str, section: str | Tree) -> dict[str, Any] | None:
        key = f"pools.{name}"
        if not isinstance(section, dict) or not isinstance(section.get("addrs"), str):
            self.unmapped(key, section, "a pool without addrs: not imported")
            return None
        out: dict[str, Any] = {"addrs": str(section["addrs"]).strip()}
        for k, v in section.items():
            if k == "dns" and isinstance(v, str):
                out["dns"] = _list(v)
            elif k != "addrs":
                self.unmapped(f"{key}.{k}", v, "no equivalent (ikeguard pools hand out addresses and DNS)")
        return out

    # -- secrets --------------------------------------------------------------------------------------------
    def secret(self, name: str, section: str | Tree) -> tuple[str, dict[str, Any]] | None:
        key = f"secrets.{name}"
        if not isinstance(section, dict):
            self.unmapped(key, section, "not a section")
            return None
        if name.startswith("eap") or name.startswith("xauth"):
            self.unmapped(key, section, "EAP/XAuth user secrets belong on the RADIUS server (its users "
                                        "file): not imported")
            return None
        if not name.startswith("ike"):
            self.unmapped(key, section, "only IKE pre-shared keys are imported (keys are found by "
                                        "certificate; EAP/XAuth/PIN secrets have no equivalent)")
            return None
        ids = [v for k, v in section.items() if (k == "id" or k.startswith("id-")) and isinstance(v, str)]
        secret = section.get("secret")
        for k, v in section.items():
            if k != "secret" and not (k == "id" or k.startswith("id-")):
                self.unmapped(f"{key}.{k}", v, "no equivalent in ikeguard")
        if not isinstance(secret, str):
            self.unmapped(f"{key}.secret", "", "missing: secret not imported")
            return None
        label = re.sub(r"[^A-Za-z0-9_-]", "_", name[3:].lstrip("-_") or "default")
        file = f"{label}.psk"
        self.result.files[file] = _secret_value(secret)
        return label, {"ids": ids, "secret_file": file}

    # -- keys -----------------------------------------------------------------------------------------------
    def private_key_for(self, cert_path: Path) -> Path | None:
        """The key file whose public key is the certificate's (charon finds keys the same way)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            data = cert_path.read_bytes()
            cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                    else x509.load_der_x509_certificate(data))
        except (OSError, ValueError):
            return None
        wanted = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        for path, key in self.keys():
            if key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == wanted:
                return path
        return None

    def keys(self) -> list[tuple[Path, Any]]:
        if self._keys is None:
            from cryptography.hazmat.primitives import serialization

            found: list[tuple[Path, Any]] = []
            for sub in KEY_DIRS:
                for path in sorted((self.dir / sub).glob("*")):
                    try:
                        data = path.read_bytes()
                        pem = b"-----BEGIN" in data
                        load: Callable[..., Any] = (serialization.load_pem_private_key if pem
                                                    else serialization.load_der_private_key)
                        found.append((path, load(data, password=None)))
                    except (OSError, ValueError, TypeError):
                        continue  # encrypted or not a key: not ours to guess
            self._keys = found
        return self._keys

    # -- validation -----------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Take out, and list, every value the configuration model refuses, until the tree loads."""
        from ikeguard.policy.model import ConfigModel

        cfg = self.result.config
        for _ in range(200):
            try:
                ConfigModel.model_validate(cfg)
                return
            except ValidationError as exc:
                error = exc.errors()[0]
                loc = [str(p) for p in error["loc"]]
                if not self._drop(cfg, loc, error["msg"]):
                    raise
        raise ValueError("could not make the imported configuration valid")

    def _drop(self, cfg: dict[str, Any], loc: list[str], message: str) -> bool:
        # the deepest existing dict key along loc is removed; a connection that cannot stand is removed whole
        node: Any = cfg
        trail: list[tuple[dict[str, Any], str]] = []
        for part in loc:
            if isinstance(node, dict) and part in node:
                trail.append((node, part))
                node = node[part]
            else:
                break
        if not trail:
            return False
        parent, last = trail[-1]
        dotted = ".".join(p for _, p in trail)
        if len(trail) <= 2 or last in ("local", "remote"):  # a connection/authority without its core
            conn_parent, conn_name = trail[min(1, len(trail) - 1)]
            self.unmapped(".".join(p for _, p in trail[:2]), "",
                          f"refused by ikeguard ({message}): not imported")
            conn_parent.pop(conn_name, None)
            if trail[0][1] == "connections":
                self.result.skipped.append(conn_name)
            return True
        value = parent.pop(last)
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        self.unmapped(_swanctl_key(dotted), shown, f"refused by ikeguard: {message}")
        return True


def _swanctl_key(dotted: str) -> str:
    return dotted.replace("secrets.ike.", "secrets.ike-")


def import_swanctl(tree: Tree, located: Located, *, swanctl_dir: Path, output_dir: Path,
                   gateway: Mapping[str, Any], radius: Mapping[str, Any] | None = None) -> ImportResult:
    """Convert a parsed swanctl.conf (secrets merged in) into an ikeguard configuration tree; ``radius`` is
    the ``[radius]`` section EAP connections are relayed to (their rounds become ``eap-radius``)."""
    return _Converter(tree, located, swanctl_dir, output_dir, radius).convert(dict(gateway))


__all__ = ["ImportResult", "Unmapped", "dump_toml", "import_swanctl"]
