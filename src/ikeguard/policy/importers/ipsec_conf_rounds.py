"""ipsec.conf authentication rounds and CA sections (ipsec.conf(5); charon's stroke_config.c and
stroke_ca.c build the same peer config from them, read, not copied), for :mod:`.ipsec_conf`:

* ``rightauth2``/``rightid2`` (the peer's second round, RFC 4739: typically EAP of the user after the
  device's certificate) become ``remote-2``; a second round of our own (``leftauth2``) has no equivalent;
* ``eap_identity`` is the identity the peer's EAP round must give: ``remote.eap_id`` (or ``remote-2``'s),
  ``%identity`` meaning "ask for it" (swanctl ``eap_id = %any``); ``aaa_identity`` stays unmapped (the RADIUS
  server is configured in ``[radius]``);
* ``ca NAME`` sections (``cacert``, ``crluri``/``crluri1``/``crluri2``, ``ocspuri``/``ocspuri1``/
  ``ocspuri2``) become ``[authorities.NAME]``; ``certuribase`` and ``auto=ignore`` sections are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ikeguard.policy.importers.settings_syntax import Tree

Note = Callable[[str, str, str, str], None]  # key, value, reason, where
_CRL = ("crluri", "crluri1", "crluri2")
_OCSP = ("ocspuri", "ocspuri1", "ocspuri2")


def round_keys(us: str, them: str) -> set[str]:
    """The conn options :func:`apply_rounds` handles (the caller skips them in its own loop)."""
    return {"eap_identity", f"{them}auth2", f"{them}id2", f"{us}auth2", f"{us}id2"}


def _method(value: str) -> str:
    low = value.strip().lower()
    return "psk" if low in ("psk", "secret") else low


def apply_rounds(name: str, options: Mapping[str, tuple[str, str]], us: str, them: str, out: Tree,
                 remote: Tree, put: Callable[[Tree, str, str, str, str], None], note: Note) -> None:
    """Second rounds and ``eap_identity`` of conn ``name`` into ``out``/``remote`` (swanctl tree)."""
    key = f"connections.{name}"
    for k in (f"{us}auth2", f"{us}id2"):
        if k in options:
            value, where = options[k]
            note(f"conn {name}.{k}", value, "a second authentication round of our own has no equivalent "
                 "(ikeguard authenticates itself once)", where)
    second: Tree | None = None
    if f"{them}auth2" in options:
        value, where = options[f"{them}auth2"]
        second = {}
        put(second, f"{key}.remote-2.auth", "auth", _method(value), where)
        if f"{them}id2" in options:
            ident, id_where = options[f"{them}id2"]
            put(second, f"{key}.remote-2.id", "id", ident, id_where)
        out["remote-2"] = second
    elif f"{them}id2" in options:
        value, where = options[f"{them}id2"]
        note(f"conn {name}.{them}id2", value, f"without {them}auth2 there is no second round", where)
    if "eap_identity" in options:
        value, where = options["eap_identity"]
        eap_id = "%any" if value.strip() == "%identity" else value.strip()
        target, dotted = ((second, f"{key}.remote-2") if second is not None and
                          str(second.get("auth", "")).startswith("eap") else (remote, f"{key}.remote"))
        if not str(target.get("auth", "")).startswith("eap"):
            note(f"conn {name}.eap_identity", value, "no EAP round of the peer in this conn (an EAP "
                 "round of our own is not imported)", where)
        else:
            put(target, f"{dotted}.eap_id", "eap_id", eap_id, where)


def authority(name: str, options: Mapping[str, tuple[str, str]], where: str, ipsec_d: Path,
              put: Callable[[Tree, str, str, str, str], None], note: Note) -> Tree | None:
    """A ``ca NAME`` section as a swanctl ``authorities.NAME`` tree (None: not imported, reported)."""
    key = f"authorities.{name}"
    auto = options.get("auto", ("ignore", where))
    if auto[0] == "ignore":
        note(f"ca {name}.auto", auto[0], "auto=ignore (or unset): charon does not load this ca section, "
             "not imported", auto[1])
        return None
    out: Tree = {}
    crls: list[str] = []
    ocsps: list[str] = []
    for k, (value, at) in options.items():
        if k == "cacert":
            path = Path(value)
            full = path if path.is_absolute() else ipsec_d / "cacerts" / path
            put(out, f"{key}.cacert", "cacert", str(full.resolve()), at)
        elif k in _CRL:
            crls.append(value)
        elif k in _OCSP:
            ocsps.append(value)
        elif k != "auto" and k != "also":
            note(f"ca {name}.{k}", value, "no equivalent (certuribase: ikeguard fetches no certificates by "
                 "hash-and-URL)" if k == "certuribase" else "no equivalent in ikeguard", at)
    if "also" in options:
        note(f"ca {name}.also", options["also"][0], "also= in ca sections: write the merged section", where)
    if crls:
        put(out, f"{key}.crl_uris", "crl_uris", ",".join(crls), where)
    if ocsps:
        put(out, f"{key}.ocsp_uris", "ocsp_uris", ",".join(ocsps), where)
    if "cacert" not in out:
        note(f"ca {name}", "", "a ca section without cacert cannot be imported", where)
        return None
    return out


def authorities(sections: list[Any], ipsec_d: Path, put: Callable[[Tree, str, str, str, str], None],
                note: Note) -> Tree:
    """Every importable ``ca`` section by name (``ca %default`` options apply to the others)."""
    defaults: dict[str, tuple[str, str]] = {}
    for s in sections:
        if s.kind == "ca" and s.name == "%default":
            defaults.update(s.options)
    out: Tree = {}
    for s in sections:
        if s.kind != "ca" or s.name == "%default":
            continue
        entry = authority(s.name, {**defaults, **s.options}, s.where, ipsec_d, put, note)
        if entry is not None:
            out[s.name] = entry
    return out
