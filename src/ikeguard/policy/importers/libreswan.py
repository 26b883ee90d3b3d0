"""libreswan's ``ipsec.conf`` (libreswan 4/5, ipsec.conf(5) of libreswan; read, not copied) for
``ikeguard import``: its options are rewritten into strongSwan's ipsec.conf meaning and the strongSwan
translator (:mod:`.ipsec_conf`) does the rest, so both starters share one translation and one report.

What differs from strongSwan's file, and how it is carried over:

* ``ike=``/``esp=``/``phase2alg=``: libreswan's ``aes_gcm256-sha2_384;dh20``, ``aes+aes_gcm``, ``dh19``,
  ``aes_gcm_c``, ``chacha20_poly1305`` syntax is translated token by token into swanctl proposals (libreswan
  offers only what is listed: strict, as with strongSwan's ``!``). A proposal mixing AEAD and classic
  ciphers becomes two (RFC 7296 §3.3). ``aes`` without a key size offers 256 and 128, as libreswan does.
* ``pfs=yes`` (libreswan's default) with an ``esp=`` that names no group: libreswan rekeys Child SAs with
  the IKE SA's group, so that group (the first of ``ike=``) is appended; ``pfs=no`` keeps ESP without one.
* ``ikev2=no|never|permit`` is IKEv1 (refused); ``ikev2=insist|yes|propose`` and ``keyexchange=ikev2`` IKEv2.
* lifetimes: ``salifetime`` is ``lifetime``; absent, libreswan's defaults (``ikelifetime=8h``,
  ``salifetime=8h``, ``rekeymargin=9m``) are written; libreswan rekeys rather than reauthenticates
  (``reauth=no``).
* ``leftsubnets={a b}``: the subnets as one traffic selector list (IKEv2 narrowing, one Child SA).
* ``leftcert`` is an NSS nickname: with ``--nssdb`` the database is exported first (:mod:`.nss`), else
  ``ipsec.d/certs/NICK.pem`` (``certutil -L -n NICK -a``) is used when it exists, else it is listed (the key
  is found in ``private/`` by the certificate's public key, as for strongSwan).
* ``authby=rsa-sha2*/ecdsa*/rsasig`` is pubkey; ``encapsulation=yes`` is ``forceencaps=yes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ikeguard.policy.importers.ipsec_conf import SecretEntry, Section, _subject, _Translator
from ikeguard.policy.importers.swanctl import ImportResult, import_swanctl

Flavour = Literal["strongswan", "libreswan"]
Options = dict[str, tuple[str, str]]

_LIBRESWAN_ONLY = {"ikev2", "salifetime", "phase2alg", "phase2", "leftrsasigkey", "rightrsasigkey", "pfs",
                   "encapsulation", "narrowing", "leftsubnets", "rightsubnets", "sha2-truncbug",
                   "nat-ikev1-method", "protostack", "nssdir", "plutodebug", "ikepad", "ipsec-interface",
                   "logfile", "virtual-private", "virtual_private"}
_DH_NUMBERS = {"1": "modp768", "2": "modp1024", "5": "modp1536", "14": "modp2048", "15": "modp3072",
               "16": "modp4096", "17": "modp6144", "18": "modp8192", "19": "ecp256", "20": "ecp384",
               "21": "ecp521", "31": "curve25519", "32": "curve448"}
_HASHES = {"sha1": "sha1", "sha": "sha1", "sha2": "sha256", "sha2_256": "sha256", "sha256": "sha256",
           "sha2_384": "sha384", "sha384": "sha384", "sha2_512": "sha512", "sha512": "sha512", "md5": "md5",
           "aes_xcbc": "aesxcbc", "aesxcbc": "aesxcbc"}
_GCM_ICV = {"a": "8", "b": "12", "c": "16", "": "16"}


def _encr(token: str) -> list[str] | None:
    t = token.lower()
    m = re.fullmatch(r"aes_gcm(?:_?([abc]))?(?:_?(\d+))?|aes(\d+)?gcm(\d+)?(?:_(\d+))?", t)
    if m and m.group(0).startswith("aes_gcm"):
        icv = _GCM_ICV[m.group(1) or ""]
        return [f"aes{m.group(2)}gcm{icv}"] if m.group(2) else [f"aes256gcm{icv}", f"aes128gcm{icv}"]
    if m:
        return [t]
    m = re.fullmatch(r"aes(?:_cbc)?(?:_?(\d+))?", t)
    if m:
        return [f"aes{m.group(1)}"] if m.group(1) else ["aes256", "aes128"]
    m = re.fullmatch(r"aes_?ctr(?:_?(\d+))?|aes(\d+)ctr", t)
    if m:
        bits = m.group(1) or m.group(2)
        return [f"aes{bits}ctr"] if bits else ["aes256ctr", "aes128ctr"]
    if t in ("chacha20_poly1305", "chacha20poly1305"):
        return ["chacha20poly1305"]
    if t in ("3des", "3des_cbc"):
        return ["3des"]
    if re.fullmatch(r"camellia(\d+)?|cast128|blowfish\d*|null_auth_aes_gmac|des", t):
        return [t]
    return None


def _dh(token: str) -> str | None:
    t = token.lower().replace("ecp_", "ecp")
    m = re.fullmatch(r"dh(\d+)", t)
    if m:
        return _DH_NUMBERS.get(m.group(1))
    if re.fullmatch(r"modp\d+|ecp\d+|curve25519|curve448|x25519|x448|ecp\d+bp|mlkem\d+|ke\d_\w+", t):
        return {"x25519": "curve25519", "x448": "curve448"}.get(t, t)
    return None


def translate_proposal(text: str, *, ike: bool) -> tuple[list[str], list[str]]:
    """One ``ike=``/``esp=`` value (either syntax) -> swanctl proposals and the problems found."""
    proposals: list[str] = []
    problems: list[str] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        if item.endswith("!"):
            item = item[:-1]
        encr: list[str] = []
        hashes: list[str] = []
        groups: list[str] = []
        for token in (t for t in re.split(r"[-;+]", item) if t):
            low = token.lower()
            if (e := _encr(low)) is not None:
                encr += e
            elif low.startswith("prf") and _HASHES.get(low[3:]):
                hashes.append(_HASHES[low[3:]])
            elif low in _HASHES:
                hashes.append(_HASHES[low])
            elif low in ("none", "null"):
                continue
            elif (g := _dh(low)) is not None:
                groups.append(g)
            else:
                problems.append(f"unknown algorithm {token!r} in {item!r}")
        if not encr:
            problems.append(f"no encryption algorithm in {item!r}")
            continue
        aead = [e for e in encr if "gcm" in e or "ccm" in e or e == "chacha20poly1305"]
        classic = [e for e in encr if e not in aead]
        # a proposal mixing AEAD and classic ciphers is two proposals (RFC 7296 §3.3, strongSwan splits too)
        if classic:
            parts = classic + (hashes or ["sha256"]) + groups
            proposals.append("-".join(dict.fromkeys(parts)))
        if aead:
            parts = aead + ([f"prf{h}" for h in hashes] or ["prfsha256"] if ike else []) + groups
            proposals.append("-".join(dict.fromkeys(parts)))
    return proposals, problems


def detect_flavour(sections: list[Section], text: str = "") -> Flavour:
    """libreswan when an option only libreswan knows, or its algorithm syntax (``_``/``;``), appears."""
    if re.search(r"^version\s+2", text, re.M):
        return "libreswan"
    for section in sections:
        if set(section.options) & _LIBRESWAN_ONLY:
            return "libreswan"
        for key in ("ike", "esp", "phase2alg"):
            value = section.options.get(key, ("", ""))[0]
            if ";" in value or "_" in value:
                return "libreswan"
    return "strongswan"


class _LibreswanTranslator(_Translator):
    """The strongSwan translator, fed each conn's options rewritten into strongSwan's meaning."""

    def effective(self, conn: Section, defaults: dict[str, tuple[str, str]],
                  by_name: Mapping[str, Section]) -> dict[str, tuple[str, str]]:
        return self.rewrite(conn.name, super().effective(conn, defaults, by_name))

    def rewrite(self, name: str, options: Options) -> Options:
        out = dict(options)
        v2 = out.pop("ikev2", None)
        if v2 is not None:
            out["keyexchange"] = ("ikev1" if v2[0].lower() in ("no", "never", "permit") else "ikev2", v2[1])
        out.setdefault("ikelifetime", ("8h", ""))
        if "salifetime" in out:
            out["lifetime"] = out.pop("salifetime")
        out.setdefault("lifetime", ("8h", ""))
        out.setdefault("reauth", ("no", ""))
        for side in ("left", "right"):
            if f"{side}subnets" in out:
                value, where = out.pop(f"{side}subnets")
                nets = [n for n in re.split(r"[\s,{}]+", value) if n]
                out[f"{side}subnet"] = (",".join(nets), where)
        if "phase2alg" in out and "esp" not in out:
            out["esp"] = out.pop("phase2alg")
        authby = out.get("authby")
        if authby is not None:
            first = authby[0].split(",")[0].strip().lower()
            if first.startswith(("rsa", "ecdsa")):
                out["authby"] = ("pubkey", authby[1])
        enc = out.pop("encapsulation", None)
        if enc is not None and enc[0].lower() in ("yes", "no"):
            out["forceencaps"] = enc
        fromcert = out.get("leftid", ("", ""))[0] == "%fromcert"
        if out.get("rightid", ("", ""))[0] == "%fromcert":
            out["rightid"] = ("%any", out["rightid"][1])  # whatever its certificate (from a trusted CA) says
        if "leftcert" in out:
            nick, where = out["leftcert"]
            found = next((p for p in (self.ipsec_d / "certs" / nick, self.ipsec_d / "certs" / f"{nick}.pem",
                                      self.ipsec_d / "certs" / f"{nick}.crt") if p.is_file()), None)
            if found is None:
                del out["leftcert"]
                self.note(f"conn {name}.leftcert", nick, "an NSS nickname: import again with --nssdb "
                          "(the NSS database, e.g. /var/lib/ipsec/nss), or export it to ipsec.d/certs/"
                          "NICK.pem (certutil -L -n NICK -a) and its key to private/ (pk12util -o)", where)
            else:
                out["leftcert"] = (str(found), where)
                subject = _subject(found)
                if fromcert and subject is not None:  # %fromcert: our certificate's subject DN
                    out["leftid"] = (subject, out["leftid"][1])
        groups: list[str] = []
        if "ike" in out:
            value, where = out["ike"]
            proposals = self.algorithms(name, "ike", value, where, ike=True)
            groups = [t for t in (proposals[0].split("-") if proposals else []) if _dh(t)]
            out["ike"] = (",".join(proposals) + "!", where) if proposals else ("", where)
            if not proposals:
                del out["ike"]
        pfs = out.pop("pfs", None)
        if "esp" in out:
            value, where = out["esp"]
            proposals = self.algorithms(name, "esp", value, where, ike=False)
            if (pfs is None or pfs[0].lower() == "yes") and groups:
                proposals = [p if any(_dh(t) for t in p.split("-")) else f"{p}-{groups[0]}"
                             for p in proposals]
            if proposals:
                out["esp"] = (",".join(proposals) + "!", where)
            else:
                del out["esp"]
        return out

    def algorithms(self, name: str, key: str, value: str, where: str, *, ike: bool) -> list[str]:
        proposals, problems = translate_proposal(value, ike=ike)
        for problem in problems:
            self.note(f"conn {name}.{key}", value, problem, where)
        return proposals


def import_libreswan_conf(sections: list[Section], secrets: list[SecretEntry], *, ipsec_d: Path,
                          output_dir: Path, gateway: Mapping[str, Any],
                          local: str | None = None, radius: Mapping[str, Any] | None = None) -> ImportResult:
    """Convert a parsed libreswan ipsec.conf and ipsec.secrets into an ikeguard configuration tree."""
    t = _LibreswanTranslator(sections, secrets, ipsec_d, local)
    t.translate()
    result = import_swanctl(t.tree, t.located, swanctl_dir=ipsec_d, output_dir=output_dir, gateway=gateway,
                            radius=radius)
    result.unmapped[:0] = t.unmapped
    result.skipped[:0] = t.skipped
    return result
