"""strongSwan's legacy ``ipsec.conf`` + ``ipsec.secrets`` (ipsec.conf(5), ipsec.secrets(5)) to an ikeguard
configuration tree.

The file is parsed here (sections ``config setup``, ``conn NAME``, ``ca NAME`` with indented ``key=value``
lines, ``include`` with globs, ``also=`` and ``conn %default``: no maintained Python library reads this
format), each connection is translated into the swanctl.conf tree charon's stroke plugin builds from it
(stroke_config.c: ``ikelifetime``/``lifetime`` minus ``margintime`` are the rekey times, ``margintime`` times
``rekeyfuzz`` the jitter, ``reauth=yes`` turns the IKE rekey into a reauthentication, ``dpdaction=hold`` is
``trap``), and :mod:`.swanctl` does the rest, so both importers share one output model and one validation.

"Us" is one side: ``--local`` names it (``left``/``right``, or a value of ``left``/``right``/``leftid``/
``rightid``); without it the side whose address is ``%defaultroute``, else the side with a certificate, else
``left`` (ipsec.conf's convention). Conns with the same IKE settings become one connection with several
children (charon shares their IKE SA). Credentials live in the ipsec.d directory: ``certs/``, ``cacerts/``,
``private/`` (keys found by public key, like charon). Every option without an equivalent is listed with its
file and line; nothing is dropped silently. PSKs keep their ``0x``/``0s`` form in their 0600 files.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ikeguard.policy.importers import ipsec_conf_rounds as rounds
from ikeguard.policy.importers.settings_syntax import Located, SettingsSyntaxError, Tree, read_bounded
from ikeguard.policy.importers.swanctl import ImportResult, Unmapped, import_swanctl

MAX_BYTES = 1 << 20
MAX_INCLUDES = 50
_ALSO_DEPTH = 20
_DUR = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BOOL = {"yes": True, "no": False}

# options with no ikeguard equivalent, and why (the rest of the unknown ones get a generic reason)
_NO_EQUIVALENT = {
    "updown": "no updown scripts: use the audit log / events",
    "firewall": "no updown scripts (firewall rules are the operator's)",
    "hostaccess": "no updown scripts",
    "sourceip": "virtual IPs are configured as [pools] by hand",
    "dns": "virtual IP attributes are configured as [pools] by hand",
    "sendcert": "ikeguard sends its certificate when the peer asks (certreq), as strongSwan's default",
    "protoport": "port/protocol selectors: write them into local_ts/remote_ts by hand",
    "groups": "group membership: see [connections.NAME.groups] (RADIUS)",
    "allowany": "no equivalent",
    "ikeport": "ports are the gateway's",
    "compress": "IPComp is not supported",
    "reqid": "reqids are assigned by ikeguard",
    "mark": "marks: use if_id (XFRM interfaces)",
    "keyingtries": "automatic initiation retries follow [gateway] retry settings",
    "inactivity": "no inactivity timeout",
    "dpdtimeout": "IKEv1 only (IKEv2 DPD times out by retransmission)",
    "aggressive": "IKEv1 only",
    "installpolicy": "policies are always installed",
    "aaa_identity": "EAP is configured as remote auth = eap-radius by hand",
    "xauth": "XAuth is IKEv1 only",
    "xauth_identity": "XAuth is IKEv1 only",
    "modeconfig": "IKEv1 only",
    "ikedscp": "no DSCP marking of IKE packets",
    "sha256_96": "truncated SHA-256 (draft) is not supported",
    "tfc": "no traffic flow confidentiality padding",
    "pfs": "IKEv1 only (IKEv2 PFS follows esp=)",
    "auth2": "a second authentication round: write [connections.NAME.remote-2] by hand",
    "id2": "a second authentication round: write [connections.NAME.remote-2] by hand",
    "cert2": "a second authentication round has no certificate in ikeguard",
    "ca2": "a second authentication round has no certificate in ikeguard",
    "groups2": "a second authentication round: write [connections.NAME.remote-2] by hand",
    "nexthop": "IKEv1 (pluto) leftover",
    "subnetwithin": "no equivalent: narrowing follows local_ts/remote_ts",
    "rsasigkey": "raw public keys: use certificates",
    "sigkey": "raw public keys: use certificates",
    "pubkey": "raw public keys: use certificates",
    "cert_policy": "certificate policies: set remote.cert_policy by hand",
}
_SIDE_KEYS = ("", "subnet", "id", "cert", "auth", "auth2", "ca", "ca2", "cert2", "id2", "updown", "firewall",
              "hostaccess", "sourceip", "dns", "sendcert", "protoport", "groups", "groups2", "allowany",
              "ikeport", "subnetwithin", "nexthop", "rsasigkey", "cert_policy", "pubkey", "sigkey")


@dataclass
class Section:
    """One ``conn``/``ca``/``config`` section: option -> (value, "file:line")."""

    kind: str
    name: str
    where: str
    options: dict[str, tuple[str, str]] = field(default_factory=dict)


def _read(path: Path) -> str:
    return read_bounded(path, MAX_BYTES)


def _unquote(value: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    if "#" in v:
        v = v.split("#", 1)[0].rstrip()
    return v


def parse_ipsec_conf(text: str, *, file: str = "<text>", base: Path | None = None,
                     sections: list[Section] | None = None, budget: list[int] | None = None) -> list[Section]:
    """The sections of an ipsec.conf (ipsec.conf(5) "CONN SECTIONS"), includes expanded in place."""
    out = sections if sections is not None else []
    budget = budget if budget is not None else [MAX_INCLUDES]
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{file}:{number}"
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():
            words = stripped.split("#", 1)[0].split()
            if words[0] == "include" and len(words) == 2:
                budget[0] -= 1
                if budget[0] < 0:
                    raise SettingsSyntaxError(f"{where}: too many includes")
                pattern = words[1] if Path(words[1]).is_absolute() or base is None else str(base / words[1])
                for match in sorted(glob.glob(pattern)):
                    p = Path(match)
                    parse_ipsec_conf(_read(p), file=str(p), base=p.parent, sections=out, budget=budget)
                current = None
                continue
            if words[0] == "version":
                continue
            if words[0] in ("config", "conn", "ca") and len(words) == 2:
                current = Section(words[0], words[1], where)
                out.append(current)
                continue
            raise SettingsSyntaxError(f"{where}: expected 'conn NAME', 'ca NAME', 'config setup' or "
                                      "'include'")
        if current is None:
            raise SettingsSyntaxError(f"{where}: option outside a section")
        if "=" not in stripped:
            raise SettingsSyntaxError(f"{where}: expected key=value")
        key, value = stripped.split("=", 1)
        current.options[key.strip()] = (_unquote(value), where)
    return out


@dataclass(frozen=True)
class SecretEntry:
    """One ``ids : TYPE value`` line of ipsec.secrets."""

    ids: list[str]
    kind: str
    value: str  # PSK: as written (0x/0s kept), quotes removed; RSA/ECDSA: the key file
    where: str


def parse_ipsec_secrets(text: str, *, file: str = "<text>", base: Path | None = None,
                        budget: list[int] | None = None) -> list[SecretEntry]:
    """The entries of an ipsec.secrets (ipsec.secrets(5)); continuation lines start with blanks."""
    budget = budget if budget is not None else [MAX_INCLUDES]
    entries: list[SecretEntry] = []
    logical: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.strip().startswith("#"):
            continue
        if raw[0].isspace() and logical:
            logical[-1] = (logical[-1][0] + " " + raw.strip(), logical[-1][1])
        else:
            logical.append((raw.strip(), f"{file}:{number}"))
    for line, where in logical:
        if line.startswith("include "):
            budget[0] -= 1
            if budget[0] < 0:
                raise SettingsSyntaxError(f"{where}: too many includes")
            target = line.split(None, 1)[1].strip()
            pattern = target if Path(target).is_absolute() or base is None else str(base / target)
            for match in sorted(glob.glob(pattern)):
                p = Path(match)
                entries += parse_ipsec_secrets(_read(p), file=str(p), base=p.parent, budget=budget)
            continue
        if ":" not in line:
            raise SettingsSyntaxError(f"{where}: expected 'ids : TYPE value'")
        # ids may be quoted DNs with colons in them: the separator is the last ' : ' or a leading ':'
        m = re.match(r"^(?P<ids>.*?)(?:^|\s):\s*(?P<kind>[A-Za-z0-9_]+)\s*(?P<value>.*)$", line)
        if m is None:
            raise SettingsSyntaxError(f"{where}: expected 'ids : TYPE value'")
        ids = [i.strip('"') for i in re.findall(r'"[^"]*"|\S+', m.group("ids"))]
        value = m.group("value").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        entries.append(SecretEntry(ids, m.group("kind").upper(), value, where))
    return entries


def _seconds(value: str) -> int | None:
    m = _DUR.match(value.strip())
    return int(m.group(1)) * _UNIT[m.group(2)] if m else None


class _Translator:
    def __init__(self, sections: list[Section], secrets: list[SecretEntry], ipsec_d: Path,
                 local: str | None) -> None:
        self.sections, self.secrets, self.ipsec_d, self.local = sections, secrets, ipsec_d, local
        self.tree: Tree = {}
        self.located = Located()
        self.unmapped: list[Unmapped] = []
        self.skipped: list[str] = []

    def note(self, key: str, value: str, reason: str, where: str) -> None:
        self.unmapped.append(Unmapped(key, value[:200], reason, where))

    def put(self, node: Tree, dotted: str, key: str, value: str | Tree, where: str) -> None:
        node[key] = value
        if where:
            self.located.lines[dotted] = where

    # -- conns ----------------------------------------------------------------------------------------------
    def effective(self, conn: Section, defaults: dict[str, tuple[str, str]],
                  by_name: Mapping[str, Section]) -> dict[str, tuple[str, str]]:
        merged = dict(defaults)
        seen: set[str] = set()

        def apply(section: Section, depth: int) -> None:
            if depth > _ALSO_DEPTH or section.name in seen:
                raise SettingsSyntaxError(f"{section.where}: also= loop at conn {section.name}")
            seen.add(section.name)
            also = section.options.get("also")
            for ref in (also[0].split() if also else []):
                target = by_name.get(ref)
                if target is None:
                    at = also[1] if also else section.where
                    raise SettingsSyntaxError(f"{at}: also={ref}: no such conn")
                apply(target, depth + 1)
            merged.update({k: v for k, v in section.options.items() if k != "also"})
            seen.discard(section.name)

        apply(conn, 0)
        return merged

    def translate(self) -> None:
        conns = [s for s in self.sections if s.kind == "conn"]
        by_name = {s.name: s for s in conns if s.name != "%default"}
        defaults: dict[str, tuple[str, str]] = {}
        for s in conns:
            if s.name == "%default":
                defaults.update(s.options)
        unique = None
        for s in self.sections:
            if s.kind == "config":
                for k, (v, where) in s.options.items():
                    if k == "uniqueids" and v in ("yes", "no", "never", "keep", "replace"):
                        unique = {"yes": "replace"}.get(v, v)
                    else:
                        self.note(f"config {s.name}.{k}", v, "charon/starter settings have no equivalent "
                                  "(logging is ikeguard's [audit]/journal)", where)
        connections: dict[str, Any] = {}
        for conn in conns:
            if conn.name == "%default":
                continue
            options = self.effective(conn, defaults, by_name)
            auto = options.get("auto", ("ignore", conn.where))
            if auto[0] == "ignore":
                self.note(f"conn {conn.name}.auto", auto[0], "auto=ignore (or unset): a template for also=, "
                          "not imported", auto[1])
                continue
            section = self.connection(conn, options, unique)
            if section is None:
                self.skipped.append(conn.name)
                continue
            # stroke_config.c: a conn whose IKE and peer settings equal an earlier one's adds its child to
            # that peer config (one IKE SA, several Child SAs), as charon does
            ike_part = {k: v for k, v in section.items() if k != "children"}
            same = next((c for c in connections.values()
                         if {k: v for k, v in c.items() if k != "children"} == ike_part), None)
            if same is not None:
                same["children"].update(section["children"])
            else:
                connections[conn.name] = section
        self.tree["connections"] = connections
        found = rounds.authorities(self.sections, self.ipsec_d, self.put, self.note)  # ca sections
        if found:
            self.tree["authorities"] = found
        self.secrets_tree(connections)

    def side(self, name: str, options: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
        def val(k: str) -> str:
            return options.get(k, ("", ""))[0]

        if self.local:
            if self.local in ("left", "right"):
                return (self.local, "right" if self.local == "left" else "left")
            for s, o in (("left", "right"), ("right", "left")):
                if self.local in (val(s), val(f"{s}id")) or self.local in val(s).split(","):
                    return s, o
        for s, o in (("left", "right"), ("right", "left")):
            if val(s) == "%defaultroute":
                return s, o
        if bool(val("leftcert")) != bool(val("rightcert")):
            return ("left", "right") if val("leftcert") else ("right", "left")
        return "left", "right"

    def connection(self, conn: Section, options: dict[str, tuple[str, str]],
                   unique: str | None) -> Tree | None:
        name = conn.name
        key = f"connections.{name}"
        us, them = self.side(name, options)
        out: Tree = {}
        child: Tree = {}
        local: Tree = {}
        remote: Tree = {}
        ck = f"{key}.children.{name}"

        def opt(k: str, default: str = "") -> str:
            return options.get(k, (default, ""))[0]

        def where(k: str) -> str:
            return options.get(k, ("", conn.where))[1]

        kx = opt("keyexchange", "ike").lower()
        if kx == "ikev1":
            self.note(f"conn {name}.keyexchange", kx, "IKEv1 is not supported: connection not imported",
                      where("keyexchange"))
            return None
        if kx == "ike" and "keyexchange" in options:
            self.note(f"conn {name}.keyexchange", kx, "'ike' also answers IKEv1: imported as IKEv2 only",
                      where("keyexchange"))
        conn_type = opt("type", "tunnel").lower()
        if conn_type not in ("tunnel", "transport"):
            self.note(f"conn {name}.type", conn_type, "only tunnel and transport exist in ikeguard (no "
                      "passthrough/drop/transport_proxy policies): connection not imported", where("type"))
            return None
        if conn_type == "transport":
            self.put(child, f"{ck}.mode", "mode", "transport", where("type"))
        authby = opt("authby", "pubkey").lower()
        if authby in ("secret", "psk"):
            default_auth = "psk"
        elif authby in ("pubkey", "rsasig", "ecdsasig", "rsa", "ecdsa"):
            default_auth = "pubkey"
        else:
            self.note(f"conn {name}.authby", authby, "only pubkey and secret exist in ikeguard (no XAuth, "
                      "never): connection not imported", where("authby"))
            return None
        lifetimes = ("ikelifetime", "lifetime", "keylife", "margintime", "rekeymargin", "rekeyfuzz", "reauth",
                     "rekey")
        handled = {"also", "auto", "keyexchange", "type", "authby", *lifetimes, *rounds.round_keys(us, them)}
        def order(item: tuple[str, tuple[str, str]]) -> tuple[bool, str, int]:
            file, _, line = item[1][1].rpartition(":")  # file order, then line; CAs after the certificates
            return item[0] in ("leftca", "rightca"), file, int(line) if line.isdigit() else 0

        for k, (v, w) in sorted(options.items(), key=order):
            if k in handled:
                continue
            side_name = next((s for s in ("left", "right") if k.startswith(s) and k[len(s):] in _SIDE_KEYS),
                             None)
            if side_name is not None:
                self.side_option(name, k, v, w, k[len(side_name):], side_name == us, out, local, remote,
                                 child, key, ck)
            else:
                self.conn_option(name, k, v, w, out, child, key, ck, options)
        for auth, side_key, side in ((local, f"{key}.local", us), (remote, f"{key}.remote", them)):
            if "auth" not in auth:
                self.put(auth, f"{side_key}.auth", "auth", default_auth, where("authby"))
            address = opt(side)
            if "id" not in auth and address and not address.startswith("%") and "," not in address:
                self.put(auth, f"{side_key}.id", "id", address, where(side))  # ipsec.conf: leftid=left
        rounds.apply_rounds(name, options, us, them, out, remote, self.put, self.note)  # auth2, eap_identity
        if remote.get("auth") == "pubkey" and "cacerts" not in remote:
            anchors = sorted(p for p in (self.ipsec_d / "cacerts").glob("*") if p.is_file())
            if anchors:
                remote["cacerts"] = ",".join(str(p.resolve()) for p in anchors)
                self.note(f"conn {name}.{them}ca", opt(f"{them}ca"), "charon trusts every CA in cacerts/: "
                          "imported as that explicit list (narrow it)", where(f"{them}ca"))
        self.lifetimes(name, options, out, child, key, ck, where)
        if unique is not None:
            out["unique"] = unique
        auto = opt("auto")
        self.put(child, f"{ck}.start_action", "start_action",
                 {"add": "none", "start": "start", "route": "trap"}.get(auto, "none"), where("auto"))
        if auto not in ("add", "start", "route"):
            self.note(f"conn {name}.auto", auto, "unknown: imported as add", where("auto"))
        out["version"] = "2"
        out["local"] = local
        out["remote"] = remote
        out["children"] = {name: child}
        return out

    def proposals(self, name: str, k: str, v: str, w: str) -> str | None:
        items = [p.strip() for p in v.split(",") if p.strip()]
        strict = bool(items) and items[-1].endswith("!")
        items = [p.rstrip("!") for p in items]
        if not items:
            return None
        if not strict:
            self.note(f"conn {name}.{k}", v, "without a trailing '!' strongSwan also offers its default "
                      "proposals: ikeguard offers only these (as with '!')", w)
        return ",".join(items)

    def conn_option(self, name: str, k: str, v: str, w: str, out: Tree, child: Tree, key: str, ck: str,
                    options: Mapping[str, tuple[str, str]]) -> None:
        low = v.lower()
        if k == "ike":
            p = self.proposals(name, k, v, w)
            if p:
                self.put(out, f"{key}.proposals", "proposals", p, w)
        elif k in ("esp", "ah"):
            if k == "ah":
                self.note(f"conn {name}.ah", v, "AH is not supported (ESP only)", w)
                return
            p = self.proposals(name, k, v, w)
            if p:
                self.put(child, f"{ck}.esp_proposals", "esp_proposals", p, w)
        elif k == "dpddelay":
            pass  # with dpdaction below
        elif k == "dpdaction":
            action = {"none": "none", "clear": "clear", "hold": "trap", "restart": "restart"}.get(low)
            if action is None:
                self.note(f"conn {name}.{k}", v, "not none/clear/hold/restart", w)
            elif action != "none":
                delay = options.get("dpddelay", ("30s", w))
                secs = _seconds(delay[0])
                if secs is None:
                    self.note(f"conn {name}.dpddelay", delay[0], "not a duration", delay[1])
                else:
                    self.put(out, f"{key}.dpd_delay", "dpd_delay", str(secs), delay[1])
                self.put(child, f"{ck}.dpd_action", "dpd_action", action, w)
        elif k == "closeaction":
            action = {"none": "none", "clear": "none", "hold": "trap", "restart": "start"}.get(low)
            if action is None:
                self.note(f"conn {name}.{k}", v, "not none/clear/hold/restart", w)
            else:
                self.put(child, f"{ck}.close_action", "close_action", action, w)
        elif k in ("mobike", "forceencaps"):
            if low not in _BOOL:
                self.note(f"conn {name}.{k}", v, "not yes/no", w)
            else:
                target = "mobike" if k == "mobike" else "encap"
                self.put(out, f"{key}.{target}", target, low, w)
        elif k == "fragmentation":
            self.put(out, f"{key}.fragmentation", "fragmentation", low, w)
        elif k == "replay_window":
            self.put(child, f"{ck}.replay_window", "replay_window", v, w)
        else:
            self.note(f"conn {name}.{k}", v, _NO_EQUIVALENT.get(k, "no equivalent in ikeguard"), w)

    def side_option(self, name: str, k: str, v: str, w: str, what: str, ours: bool, out: Tree, local: Tree,
                    remote: Tree, child: Tree, key: str, ck: str) -> None:
        auth = local if ours else remote
        auth_key = f"{key}.{'local' if ours else 'remote'}"
        if what == "":
            if v in ("%defaultroute", "%any", "%any4", "%any6") and ours:
                return
            addrs = ",".join(a.strip() for a in v.split(","))
            target = "local_addrs" if ours else "remote_addrs"
            self.put(out, f"{key}.{target}", target, addrs, w)
        elif what == "subnet":
            target = "local_ts" if ours else "remote_ts"
            ts = ",".join("dynamic" if t.strip() == "%dynamic" else t.strip() for t in v.split(","))
            self.put(child, f"{ck}.{target}", target, ts, w)
        elif what == "id":
            self.put(auth, f"{auth_key}.id", "id", v, w)
        elif what == "cert":
            if not ours:
                self.note(f"conn {name}.{k}", v, "pinning the peer's certificate has no equivalent: trust "
                          "follows cacerts", w)
                return
            path = Path(v)
            full = path if path.is_absolute() else self.ipsec_d / "certs" / path
            self.put(auth, f"{auth_key}.certs", "certs", str(full.resolve()), w)
        elif what == "auth":
            low = v.lower()
            method = "psk" if low in ("psk", "secret") else low
            self.put(auth, f"{auth_key}.auth", "auth", method, w)
        elif what == "ca" and not ours:
            dn = v
            if v == "%same":  # the issuer of our own certificate
                ours_cert = local.get("certs")
                issuer = _issuer_dn(Path(ours_cert)) if isinstance(ours_cert, str) else None
                if issuer is None:
                    return  # no certificate of ours to read: every CA in cacerts/, reported below
                dn = issuer
            path = Path(v)
            candidate = path if path.is_absolute() else self.ipsec_d / "cacerts" / path
            if v != "%same" and candidate.is_file():
                self.put(auth, f"{auth_key}.cacerts", "cacerts", str(candidate.resolve()), w)
                return
            found = _ca_file_by_dn(self.ipsec_d / "cacerts", dn)
            if found is not None:
                self.put(auth, f"{auth_key}.cacerts", "cacerts", str(found.resolve()), w)
            else:
                self.note(f"conn {name}.{k}", v, "no CA certificate with this subject in cacerts/: imported "
                          "as every CA there (narrow remote.cacerts)", w)
        elif what == "ca":
            self.note(f"conn {name}.{k}", v, "our own CA: not needed (ikeguard sends its certificate "
                      "chain)", w)
        else:
            self.note(f"conn {name}.{k}", v, _NO_EQUIVALENT.get(what, "no equivalent in ikeguard"), w)

    def lifetimes(self, name: str, options: Mapping[str, tuple[str, str]], out: Tree, child: Tree, key: str,
                  ck: str, where: Any) -> None:
        """stroke_config.c: rekey = lifetime - margin, jitter = margin * rekeyfuzz %, over = margin."""
        def get(*names: str, default: str) -> tuple[int, str, str]:
            for n in names:
                if n in options:
                    v, w = options[n]
                    s = _seconds(v)
                    if s is None:
                        self.note(f"conn {name}.{n}", v, "not a duration: ipsec.conf's default used", w)
                        break
                    return s, w, n
            return _seconds(default) or 0, "", names[0]

        ike_life, ike_w, _ = get("ikelifetime", "ikelifetime", default="3h")
        life, life_w, _ = get("lifetime", "keylife", default="1h")
        margin, margin_w, _ = get("margintime", "rekeymargin", default="9m")
        fuzz_text, fuzz_w = options.get("rekeyfuzz", ("100%", ""))
        try:
            fuzz = int(fuzz_text.rstrip("%"))
        except ValueError:
            self.note(f"conn {name}.rekeyfuzz", fuzz_text, "not a percentage: 100% used", fuzz_w)
            fuzz = 100
        rekey_text, rekey_w = options.get("rekey", ("yes", ""))
        reauth_text, reauth_w = options.get("reauth", ("yes", ""))
        jitter = margin * fuzz // 100
        if rekey_text.lower() == "no":
            self.put(out, f"{key}.rekey_time", "rekey_time", "0", rekey_w)
            self.put(child, f"{ck}.rekey_time", "rekey_time", "0", rekey_w)
            self.put(child, f"{ck}.life_time", "life_time", str(life), life_w)
            return
        ike_rekey = max(ike_life - margin, 0)
        if reauth_text.lower() == "no":
            self.put(out, f"{key}.rekey_time", "rekey_time", str(ike_rekey), ike_w)
        else:
            self.put(out, f"{key}.rekey_time", "rekey_time", "0", reauth_w)
            self.put(out, f"{key}.reauth_time", "reauth_time", str(ike_rekey), ike_w)
        self.put(out, f"{key}.over_time", "over_time", str(margin), margin_w)
        if jitter < ike_rekey:
            self.put(out, f"{key}.rand_time", "rand_time", str(jitter), fuzz_w)
        self.put(child, f"{ck}.rekey_time", "rekey_time", str(max(life - margin, 0)), life_w)
        self.put(child, f"{ck}.life_time", "life_time", str(life), life_w)
        if jitter < life - margin:
            self.put(child, f"{ck}.rand_time", "rand_time", str(jitter), fuzz_w)

    # -- secrets --------------------------------------------------------------------------------------------
    def secrets_tree(self, connections: Mapping[str, Any]) -> None:
        used: set[str] = set()
        for conn in connections.values():
            for side in ("local", "remote"):
                auth = conn.get(side, {})
                if auth.get("auth") == "psk" and "id" in auth:
                    used.add(str(auth["id"]).lstrip("@"))
        secrets: Tree = {}
        for n, entry in enumerate(self.secrets, 1):
            if entry.kind == "PSK" and entry.ids and not {i.lstrip("@") for i in entry.ids} & used:
                self.note(f"secrets PSK {' '.join(entry.ids)}", "(not shown)", "the ids of no imported PSK "
                          "connection: not imported", entry.where)
                continue
            if entry.kind != "PSK":
                if entry.kind in ("RSA", "ECDSA", "PKCS8", "PRIVATE", "BLISS"):
                    continue  # private keys are found by the certificate's public key in private/
                self.note(f"secrets {entry.kind}", "(not shown)", f"{entry.kind} secrets have no equivalent "
                          "(EAP/XAuth are configured with RADIUS, PINs with PKCS#11)", entry.where)
                continue
            section: Tree = {}
            ids = [i for i in entry.ids if i not in ("%any", "%any4", "%any6")]
            for i, ident in enumerate(ids, 1):
                section[f"id-{i}"] = ident
            section["secret"] = entry.value
            dotted = f"secrets.ike-psk{n}"
            secrets[f"ike-psk{n}"] = section
            self.located.lines[dotted] = entry.where
            self.located.lines[f"{dotted}.secret"] = entry.where
        if secrets:
            self.tree["secrets"] = secrets


def _dn_key(dn: str) -> list[str]:
    """A DN as strongSwan prints it (``C=CH, O=Lab, CN=Lab CA``) compared without blanks or case."""
    return [re.sub(r"\s*=\s*", "=", part.strip()).lower() for part in re.split(r"(?<!\\)[,/]", dn.strip('"'))
            if part.strip()]


def _subject(cert_path: Path, issuer: bool = False) -> str | None:
    from cryptography import x509

    try:
        data = cert_path.read_bytes()
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except (OSError, ValueError):
        return None
    name = cert.issuer if issuer else cert.subject
    return ", ".join(f"{a.rfc4514_attribute_name}={a.value!s}" for a in name)


def _issuer_dn(cert_path: Path) -> str | None:
    return _subject(cert_path, issuer=True)


def _ca_file_by_dn(cacerts: Path, dn: str) -> Path | None:
    """The file in ``cacerts`` whose subject is ``dn`` (how charon finds ``rightca``)."""
    wanted = _dn_key(dn)
    for path in sorted(p for p in cacerts.glob("*") if p.is_file()):
        subject = _subject(path)
        if subject is not None and _dn_key(subject) == wanted:
            return path
    return None


def import_ipsec_conf(sections: list[Section], secrets: list[SecretEntry], *, ipsec_d: Path, output_dir: Path,
                      gateway: Mapping[str, Any], local: str | None = None,
                      radius: Mapping[str, Any] | None = None) -> ImportResult:
    """Convert a parsed ipsec.conf and ipsec.secrets into an ikeguard configuration tree (``radius``: the
    ``[radius]`` section EAP rounds are relayed to, see :func:`.swanctl.import_swanctl`)."""
    t = _Translator(sections, secrets, ipsec_d, local)
    t.translate()
    result = import_swanctl(t.tree, t.located, swanctl_dir=ipsec_d, output_dir=output_dir, gateway=gateway,
                            radius=radius)
    result.unmapped[:0] = t.unmapped
    result.skipped[:0] = t.skipped
    return result


def parse_ipsec_conf_file(path: str | Path) -> list[Section]:
    """Parse a file (includes relative to it)."""
    p = Path(path)
    return parse_ipsec_conf(_read(p), file=str(p), base=p.parent)


def parse_ipsec_secrets_file(path: str | Path) -> list[SecretEntry]:
    """Parse an ipsec.secrets file (includes relative to it)."""
    p = Path(path)
    return parse_ipsec_secrets(_read(p), file=str(p), base=p.parent)


def looks_like_ipsec_conf(path: Path) -> bool:
    """An ipsec.conf: named so, or its first section line is ``conn``/``config setup``/``ca``."""
    if path.name.endswith("ipsec.conf"):
        return True
    try:
        text = _read(path)
    except SettingsSyntaxError:
        return False
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return bool(re.match(r"^(conn|ca)\s+\S+\s*$|^config\s+setup\s*$|^version\s+2", s))
    return False
