"""``load-conn`` / ``unload-conn`` over vici, checked exactly like a reload.

A connection sent by ``swanctl --load-conns`` (or a vici script) is converted with the swanctl.conf importer
(:mod:`ikeguard.policy.importers.swanctl`: same key meanings as swanctl.conf(5)). Keys without an ikeguard
equivalent refuse the connection, naming them (nothing is dropped silently). The gateway's configuration file
plus every connection loaded over vici is then written, with its paths made absolute, to
``<state_dir>/vici-loaded.toml`` (0600) and reloaded through :func:`ikeguard.service.reload.reload_gateway`: a
connection the profile refuses (weak proposals, an unbound PSK ...) is refused with the findings as
``errmsg`` and the running configuration stays; an accepted one is live, unchanged tunnels keep their SAs.

As with charon, connections loaded over vici live until they are unloaded or the configuration file is
reloaded (``ikeguard reload``, SIGHUP, ``reload-settings``): the file stays the truth. Certificates and keys
are not accepted over vici (``load-cert``/``load-key`` do not exist here): such a connection is refused with
that reason; ``unload-conn`` removes only connections loaded over vici.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikeguard.control.server import LOADED_FILE, CommandError
from ikeguard.control.vici_codec import Section
from ikeguard.policy.importers.settings_syntax import Located, Tree
from ikeguard.policy.importers.swanctl import dump_toml, import_swanctl

if TYPE_CHECKING:
    from ikeguard.control.vici_server import ViciServer

_CERT_KEYS = ("certs", "cacerts", "pubkeys")


def _as_tree(section: Section, path: str) -> Tree:
    """A vici section as the settings tree the importer reads (lists joined with commas, values as text)."""
    tree: Tree = {}
    for key, value in section.items():
        where = f"{path}.{key}"
        if isinstance(value, dict):
            tree[key] = _as_tree(value, where)
        elif isinstance(value, list):
            if key in _CERT_KEYS and value:
                raise CommandError(f"{where}: certificates over vici are not supported (no load-cert): put "
                                   "certificate connections in the configuration file")
            tree[key] = ", ".join(v.decode("utf-8", "replace") for v in value)
        else:
            tree[key] = value.decode("utf-8", "replace")
    return tree


def _absolute(config: dict[str, Any], base: Path) -> dict[str, Any]:
    """The configuration with every file path absolute (it is written to another directory)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base / value)
        return value

    gateway = config.get("gateway", {})
    gateway["state_dir"] = fix(gateway.get("state_dir", "state"))
    if isinstance(gateway.get("vici"), str):
        gateway["vici"] = fix(gateway["vici"])
    for sink in config.get("audit", {}).get("sinks", []):
        for key in ("ca", "cert", "key", "path"):
            if key in sink:
                sink[key] = fix(sink[key])
    authorities = config.get("authorities", {})
    for auth in authorities.values():
        auth["cacert"] = fix(auth.get("cacert"))
        auth["crls"] = [fix(c) for c in auth.get("crls", [])]
    for conn in config.get("connections", {}).values():
        local, remote = conn.get("local", {}), conn.get("remote", {})
        local["certs"] = [fix(c) for c in local.get("certs", [])]
        if "key" in local:
            local["key"] = fix(local["key"])
        remote["cacerts"] = [c if c in authorities else fix(c) for c in remote.get("cacerts", [])]
        if "peers" in remote:
            remote["peers"] = fix(remote["peers"])
    for secret in config.get("secrets", {}).get("ike", {}).values():
        if "secret_file" in secret:
            secret["secret_file"] = fix(secret["secret_file"])
    return config


def forget_if_reloaded(server: ViciServer) -> None:
    """A reload of the file since (SIGHUP, ``ikeguard reload``) ended what was loaded over vici."""
    if Path(server.gateway.plan.config.path).name != LOADED_FILE:
        server.loaded = {}
        server.loaded_creds = {kind: {} for kind in server.loaded_creds}


def _base_file(server: ViciServer) -> Path:
    return server._config_path or Path(server.gateway.plan.config.path)


async def apply_loaded(server: ViciServer, loaded: dict[str, Any], user: str,
                       creds: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Write file + ``loaded`` connections + ``creds`` (secrets, authorities, pools loaded over vici; default:
    the server's) to the state directory and reload it; the refusal text, or None."""
    base = _base_file(server)
    try:
        config = tomllib.loads(base.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CommandError(f"cannot read {base}: {exc}") from None
    config = _absolute(config, base.parent.resolve())
    config.setdefault("connections", {}).update(loaded)
    creds = server.loaded_creds if creds is None else creds
    config.setdefault("secrets", {}).setdefault("ike", {}).update(creds.get("secrets", {}))
    config.setdefault("authorities", {}).update(creds.get("authorities", {}))
    config.setdefault("pools", {}).update(creds.get("pools", {}))
    if not config["secrets"]["ike"]:
        del config["secrets"]["ike"]
    for key in ("secrets", "authorities", "pools"):
        if not config[key]:
            del config[key]
    state = Path(config["gateway"]["state_dir"])
    target = state / LOADED_FILE
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        names = [*loaded, *(f"{k}.{n}" for k, v in creds.items() for n in v)]
        f.write(dump_toml(config, f"{base} plus what was loaded over vici ({', '.join(names)})"))
    result = await server._reload_for(user, target)
    refused: str | None = result.refused
    return refused


async def load_connections(server: ViciServer, message: Section, user: str) -> dict[str, Any]:
    """``load-conn``: every top-level section of ``message`` is one connection."""
    if not message or not all(isinstance(v, dict) for v in message.values()):
        raise CommandError("load-conn expects one section per connection")
    tree: Tree = {"connections": {name: _as_tree(section, f"connections.{name}")
                                  for name, section in message.items() if isinstance(section, dict)}}
    base = _base_file(server).parent.resolve()
    result = import_swanctl(tree, Located(), swanctl_dir=base, output_dir=base, gateway={})
    if result.unmapped:
        keys = ", ".join(u.key for u in result.unmapped[:10])
        raise CommandError(f"no ikeguard equivalent for: {keys}")
    converted = result.config.get("connections", {})
    forget_if_reloaded(server)
    loaded = {**server.loaded, **converted}
    refused = await apply_loaded(server, loaded, user)
    if refused is not None:
        return {"success": "no", "errmsg": refused}
    server.loaded = loaded
    return {"success": "yes"}


async def unload_connection(server: ViciServer, name: str, user: str) -> dict[str, Any]:
    """``unload-conn``: drop a connection loaded over vici (file connections stay: edit the file)."""
    forget_if_reloaded(server)
    if name not in server.loaded:
        raise CommandError(f"connection '{name}' was not loaded over vici (configuration file connections "
                           "are removed by editing the file and reloading)")
    loaded = {n: c for n, c in server.loaded.items() if n != name}
    refused = await apply_loaded(server, loaded, user)
    if refused is not None:
        return {"success": "no", "errmsg": refused}
    server.loaded = loaded
    return {"success": "yes"}
