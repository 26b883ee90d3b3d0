"""``load-shared``/``unload-shared``/``get-shared``, ``load-authority``/``unload-authority`` and
``load-pool``/``unload-pool`` over vici (what ``swanctl --load-creds``, ``--load-authorities``,
``--load-pools`` and ``--load-all`` send; charon's vici_cred.c, vici_authority.c, vici_attribute.c and the
vici README, read, not copied), checked exactly like ``load-conn`` (:mod:`ikeguard.control.vici_load`).

Each loaded item becomes an entry of the configuration written to ``<state_dir>/vici-loaded.toml`` and
reloaded through the compliance profile: a PSK that breaks ``psk.binding`` (a second secret for one
identity, a secret shared by peers) or a too weak one under a profile with ``psk_entropy`` is refused with
the finding as ``errmsg``, and the running configuration stays.

* ``load-shared`` (``type = IKE``, ``data``, ``owners``, ``id``) -> ``[secrets.ike.vici-<id>]`` with the
  secret in a 0600 file under ``<state_dir>/vici-creds/`` (never inline, never logged nor audited: only
  the id and owners are);
* ``load-authority`` (``cacert`` data, ``crl_uris``, ``ocsp_uris``) -> ``[authorities.<name>]`` with the
  certificate written to ``<state_dir>/vici-creds/``;
* ``load-pool`` (``addrs`` as one CIDR, ``dns``) -> ``[pools.<name>]``.

Anything ikeguard has no equivalent for (EAP/XAUTH/PPK secrets over vici, address ranges, other
attributes, ``cert_uri_base``) is refused naming it. The unload commands remove only what was loaded over
vici; file entries are changed by editing the file. As with charon, a reload of the file ends them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikeguard.control.server import CommandError
from ikeguard.control.vici_codec import Section, text

if TYPE_CHECKING:
    from ikeguard.control.vici_server import ViciServer

KINDS = ("secrets", "authorities", "pools")
CREDS_DIR = "vici-creds"
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _texts(value: object) -> list[str]:
    if isinstance(value, list):
        return [v.decode("utf-8", "replace") for v in value if isinstance(v, bytes)]
    return [text(value)] if isinstance(value, bytes) and value else []


def _safe(name: str) -> str:
    if not name or len(name) > 64:
        raise CommandError("a name of 1 to 64 characters is needed")
    return _NAME.sub("_", name)


def _creds_dir(server: ViciServer) -> Path:
    state = server.gateway.plan.config.resolve(server.gateway.plan.config.model.gateway.state_dir)
    path = Path(state) / CREDS_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _file_has(server: ViciServer, kind: str, name: str) -> bool:
    model = server.gateway.plan.config.model
    section = model.secrets.ike if kind == "secrets" else getattr(model, kind)
    return name in section and name not in server.loaded_creds[kind]


async def _change(server: ViciServer, kind: str, name: str, entry: dict[str, Any] | None,
                  user: str) -> dict[str, Any]:
    """Add (``entry``) or remove (None) one vici-loaded item and reload; the vici answer."""
    from ikeguard.control.vici_load import apply_loaded, forget_if_reloaded

    forget_if_reloaded(server)
    creds = {k: dict(v) for k, v in server.loaded_creds.items()}
    if entry is None:
        creds[kind].pop(name, None)
    else:
        creds[kind][name] = entry
    refused = await apply_loaded(server, server.loaded, user, creds)
    if refused is not None:
        return {"success": "no", "errmsg": refused}
    server.loaded_creds = creds
    return {"success": "yes"}


def _shared_name(message: Section) -> str:
    ident = text(message.get("id"))
    if not ident:
        raise CommandError("load-shared without id: give the secret an id (swanctl uses the section name)")
    return "vici-" + _safe(ident)


def _secret_line(secret: bytes) -> bytes:
    """The secret as a secret_file line (policy.psk): as text when it reads back the same, else 0x hex."""
    try:
        as_text = secret.decode("ascii")
    except UnicodeDecodeError:
        as_text = ""
    if as_text and as_text.isprintable() and as_text == as_text.strip() and as_text[:2].lower() not in (
            "0x", "0s"):
        return secret + b"\n"
    return b"0x" + secret.hex().encode() + b"\n"


async def load_shared(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``load-shared``: an IKE PSK for ``owners`` (exact identities), as ``[secrets.ike]``."""
    kind = text(message.get("type")).upper()
    if kind != "IKE":
        where = "[secrets.ppk] in the configuration file" if kind == "PPK" else "RADIUS ([radius] servers)"
        raise CommandError(f"{kind or '?'} secrets are not loaded over vici: ikeguard uses {where}")
    data = message.get("data")
    if not isinstance(data, bytes) or not data:
        raise CommandError("load-shared without data")
    name = _shared_name(message)
    if _file_has(server, "secrets", name):
        raise CommandError(f"secrets.ike.{name} is in the configuration file: edit it there")
    path = _creds_dir(server) / f"{name}.psk"
    _write_private(path, _secret_line(data))
    del data
    answer = await _change(server, "secrets", name,
                           {"ids": _texts(message.get("owners")), "secret_file": str(path)}, user)
    if answer["success"] == "no":
        path.unlink(missing_ok=True)
    return answer


async def unload_shared(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``unload-shared`` (``id``): only secrets loaded over vici."""
    name = _shared_name(message)
    if name not in server.loaded_creds["secrets"]:
        raise CommandError("ikeguard's credentials come from its configuration: remove them there and reload "
                           f"(no secret with id '{text(message.get('id'))}' was loaded over vici)")
    answer = await _change(server, "secrets", name, None, user)
    if answer["success"] == "yes":
        (_creds_dir(server) / f"{name}.psk").unlink(missing_ok=True)
    return answer


def shared_ids(server: ViciServer) -> list[str]:
    """``get-shared``: the ids of the secrets loaded over vici (swanctl unloads the ones it lacks)."""
    from ikeguard.control.vici_load import forget_if_reloaded

    forget_if_reloaded(server)
    return [n.removeprefix("vici-") for n in server.loaded_creds["secrets"]]


def _one_section(message: Section, command: str) -> tuple[str, Section]:
    sections = [(k, v) for k, v in message.items() if isinstance(v, dict)]
    if len(sections) != 1 or len(message) != 1:
        raise CommandError(f"{command} expects exactly one section, named after the item")
    return sections[0]


def _refuse_unknown(where: str, section: Section, known: tuple[str, ...]) -> None:
    unknown = [k for k, v in section.items() if k not in known and v not in (b"", [])]
    if unknown:
        raise CommandError(f"no ikeguard equivalent for: {', '.join(f'{where}.{k}' for k in unknown)}")


async def load_authority(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``load-authority``: a trust anchor with its CRL and OCSP URIs, as ``[authorities.NAME]``."""
    from ikeguard.pki.loading import PkiLoadError, load_certificates

    raw_name, section = _one_section(message, "load-authority")
    name = _safe(raw_name)
    _refuse_unknown(f"authorities.{raw_name}", section, ("cacert", "file", "handle", "slot", "module",
                                                        "crl_uris", "ocsp_uris"))
    if any(section.get(k) for k in ("handle", "slot", "module")):
        raise CommandError(f"authorities.{raw_name}: token-held CA certificates are not loaded over vici")
    data = section.get("cacert")
    if not isinstance(data, bytes):
        raise CommandError(f"authorities.{raw_name}: cacert (certificate data) is required")
    try:
        cert = load_certificates(data)[0]
    except (PkiLoadError, ValueError, IndexError):
        raise CommandError(f"authorities.{raw_name}: cacert is not a certificate") from None
    if _file_has(server, "authorities", name):
        raise CommandError(f"authorities.{name} is in the configuration file: edit it there")
    from cryptography.hazmat.primitives import serialization

    path = _creds_dir(server) / f"authority-{name}.pem"
    _write_private(path, cert.public_bytes(serialization.Encoding.PEM))
    entry = {"cacert": str(path), "crl_uris": _texts(section.get("crl_uris")),
             "ocsp_uris": _texts(section.get("ocsp_uris"))}
    return await _change(server, "authorities", name, entry, user)


async def unload_authority(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``unload-authority`` (``name``): only authorities loaded over vici."""
    name = _safe(text(message.get("name")))
    if name not in server.loaded_creds["authorities"]:
        raise CommandError(f"authority '{name}' was not loaded over vici (configuration file authorities "
                           "are removed by editing the file and reloading)")
    return await _change(server, "authorities", name, None, user)


async def load_pool(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``load-pool``: ``addrs`` (one CIDR network) and ``dns`` servers, as ``[pools.NAME]``."""
    raw_name, section = _one_section(message, "load-pool")
    name = _safe(raw_name)
    _refuse_unknown(f"pools.{raw_name}", section, ("addrs", "dns"))
    addrs = text(section.get("addrs"))
    try:
        ipaddress.ip_network(addrs, strict=False)
    except ValueError:
        raise CommandError(f"pools.{raw_name}.addrs: ikeguard pools are one CIDR network, "
                           f"not {addrs!r}") from None
    if _file_has(server, "pools", name):
        raise CommandError(f"pools.{name} is in the configuration file: edit it there")
    return await _change(server, "pools", name, {"addrs": addrs, "dns": _texts(section.get("dns"))}, user)


async def unload_pool(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``unload-pool`` (``name``): only pools loaded over vici."""
    name = _safe(text(message.get("name")))
    if name not in server.loaded_creds["pools"]:
        raise CommandError(f"pool '{name}' was not loaded over vici (configuration file pools are removed "
                           "by editing the file and reloading)")
    return await _change(server, "pools", name, None, user)
