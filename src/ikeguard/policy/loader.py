"""Load a configuration file: TOML -> pydantic model -> peer inventories -> cross-reference checks.

Loading never opens certificates, keys or CRLs (``check`` and the rules do, as findings): a config
can be validated before its PKI exists. Every problem becomes a :class:`Finding` naming the file, the
key path, the value and what is expected; all of them are raised together in one :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ikeguard.policy.errors import ConfigError, ConfigUnreadable, Finding
from ikeguard.policy.identity import parse_identity
from ikeguard.policy.inventory import InventoryPeer, PeerInventory
from ikeguard.policy.model import ConfigModel, PeerFile
from ikeguard.policy.profile import ProfileNotFound, available_profiles, load_profile
from ikeguard.policy.selection import ambiguity_findings
from ikeguard.policy.ts import TsKind, parse_ts

_SECRET_KEYS = {"secret"}
_EXPECTED_BY_TYPE = {
    "int_parsing": "expected an integer", "int_type": "expected an integer",
    "int_from_float": "expected an integer", "float_parsing": "expected a number",
    "float_type": "expected a number", "bool_parsing": "expected true or false",
    "bool_type": "expected true or false", "string_type": "expected a string",
    "list_type": "expected a list (TOML array)", "dict_type": "expected a table",
    "model_type": "expected a table", "model_attributes_type": "expected a table",
    "missing": "required key is missing",
}


@dataclass
class LoadedConfig:
    """A validated configuration with its peer inventories; quarantine state lives here too."""

    path: Path
    model: ConfigModel
    inventories: dict[str, PeerInventory] = field(default_factory=dict)
    warnings: list[Finding] = field(default_factory=list)
    disabled_connections: dict[str, str] = field(default_factory=dict)
    # the profile ``[gateway] profile`` names (None: as ``profile_name``); differs under --profile
    file_profile: str | None = None

    @property
    def base_dir(self) -> Path:
        """Directory relative paths in the config are resolved against."""
        return self.path.parent

    @property
    def profile_name(self) -> str:
        """The profile named in ``[gateway]``."""
        return self.model.gateway.profile

    def resolve(self, relative: str) -> Path:
        """A config path (relative to the config file) as an absolute path."""
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p

    def enabled_connections(self) -> list[str]:
        """Connection names not quarantined."""
        return [n for n in self.model.connections if n not in self.disabled_connections]


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _walk(root: type[BaseModel], loc: Sequence[int | str]) -> tuple[list[str | int], list[str] | None]:
    """Clean key path (pydantic's internal union/validator tags dropped) and the field names of the
    table the last component lives in (for "did you mean")."""
    path: list[str | int] = []
    current: Any = root
    parent_fields: list[str] | None = None
    for comp in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent_fields = list(current.model_fields)
            path.append(comp)
            current = current.model_fields[comp].annotation if comp in current.model_fields else None
        elif origin is dict:
            path.append(comp)
            current = typing.get_args(current)[1]
            parent_fields = None
        elif origin is list and isinstance(comp, int):
            path.append(comp)
            current = typing.get_args(current)[0]
        elif current is None:
            path.append(comp)
        # else: a pydantic tag such as 'function-after[...]' or 'str' -> dropped
    return path, parent_fields


def format_path(path: Sequence[str | int]) -> str:
    """``("connections", "a", "proposals", 0)`` -> ``connections.a.proposals[0]``."""
    out = ""
    for comp in path:
        if isinstance(comp, int):
            out += f"[{comp}]"
        else:
            out += ("." if out else "") + comp
    return out


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict) else "{table}"
    return text if len(text) <= 80 else text[:77] + "..."


def findings_from_validation(exc: ValidationError, root: type[BaseModel], file: str,
                             prefix: Sequence[str | int] = ()) -> list[Finding]:
    """Translate pydantic errors into findings with key path, value and expectation."""
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors():
        path, fields = _walk(root, err["loc"])
        key = format_path([*prefix, *path])
        etype = err["type"]
        last = path[-1] if path else ""
        value: str | None = None if etype == "missing" else _show(err.get("input"))
        if last in _SECRET_KEYS or (len(path) > 1 and path[-2] in _SECRET_KEYS):
            value = "(hidden)"
        if etype == "extra_forbidden":
            name = str(last)
            close = difflib.get_close_matches(name, fields or [], n=1, cutoff=0.6)
            message = f"unknown key {name!r}"
            message += f"; did you mean {close[0]!r}?" if close else ""
            if fields:
                message += f" (expected one of: {', '.join(fields)})"
            value = None
        elif etype == "literal_error":
            expected = str(err.get("ctx", {}).get("expected", ""))
            options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
            close = difflib.get_close_matches(str(err.get("input")), options, n=1)
            message = f"expected one of {expected}" + (f"; did you mean {close[0]!r}?" if close else "")
        elif etype in ("value_error", "assertion_error"):
            message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        elif etype in _EXPECTED_BY_TYPE:
            message = _EXPECTED_BY_TYPE[etype]
        else:
            message = err["msg"].replace("Input should be", "expected")
        if (key, message) in seen:
            continue
        seen.add((key, message))
        findings.append(Finding("config.invalid" if etype != "extra_forbidden" else "config.unknown-key",
                                message, path=key, value=value, file=file))
    return findings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigUnreadable([Finding("config.unreadable", f"cannot read file: {reason}",
                                        file=str(path))]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigUnreadable([Finding("config.toml", f"not valid TOML: {exc}", file=str(path))]) from None


def load_peer_file(path: Path, connection: str, template_text: str) -> tuple[PeerInventory, list[Finding]]:
    """Load one inventory file (``[[peer]]`` tables) for a template connection."""
    data = _read_toml(path)
    try:
        parsed = PeerFile.model_validate(data)
    except ValidationError as exc:
        return PeerInventory(connection, parse_identity(template_text), path), \
            findings_from_validation(exc, PeerFile, str(path))
    entries = []
    findings: list[Finding] = []
    for index, entry in enumerate(parsed.peer):
        selectors = []
        for j, text in enumerate(entry.remote_ts):
            spec = parse_ts(text)
            if spec.kind is not TsKind.FIXED or spec.selector is None:
                findings.append(Finding("config.invalid", "an inventory peer binds fixed subnets, "
                                        "not dynamic/%peer", path=f"peer[{index}].remote_ts[{j}]",
                                        value=repr(text), file=str(path)))
            else:
                selectors.append(spec.selector)
        entries.append(InventoryPeer(parse_identity(entry.id), tuple(entry.remote_ts), tuple(selectors),
                                     entry.enabled, entry.ticket,
                                     None if entry.enabled else "disabled in inventory file"))
    inventory, more = PeerInventory.from_entries(connection, parse_identity(template_text), entries, path)
    return inventory, findings + more


def _cross_checks(config: LoadedConfig, file: str) -> list[Finding]:
    findings: list[Finding] = []
    model = config.model
    for name, conn in model.connections.items():
        base = f"connections.{name}"
        for i, ca in enumerate(conn.remote.cacerts):
            looks_like_file = "/" in ca or ca.endswith((".pem", ".crt", ".der"))
            if ca not in model.authorities and not looks_like_file:
                close = difflib.get_close_matches(ca, list(model.authorities), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                names = ", ".join(model.authorities) or "none defined"
                findings.append(Finding(
                    "config.reference", f"unknown authority{hint} (expected a name from [authorities]: "
                    f"{names}, or a certificate file path)", path=f"{base}.remote.cacerts[{i}]",
                    value=repr(ca), file=file))
        uses_peer = any(parse_ts(t).kind is TsKind.PEER for c in conn.children.values() for t in c.remote_ts)
        if uses_peer and conn.remote.peers is None:
            findings.append(Finding("config.reference", '"%peer" needs a peer inventory: set remote.peers',
                                    path=f"{base}.remote.peers", file=file))
        for cname, child in conn.children.items():
            for j, t in enumerate(child.local_ts):
                if parse_ts(t).kind is TsKind.PEER:
                    findings.append(Finding("config.invalid", '"%peer" only makes sense in remote_ts',
                                            path=f"{base}.children.{cname}.local_ts[{j}]", value=repr(t),
                                            file=file))
    return findings


def load_config(path: str | Path, *, profile_override: str | None = None) -> LoadedConfig:
    """Read and validate a configuration file and its peer inventories; ``ConfigError`` lists every
    problem. ``ConfigUnreadable`` (a subclass) means the file itself is missing or not TOML."""
    cfg_path = Path(path)
    file = str(cfg_path)
    data = _read_toml(cfg_path)
    try:
        model = ConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(findings_from_validation(exc, ConfigModel, file)) from None
    findings: list[Finding] = []
    file_profile = model.gateway.profile
    profile_name = profile_override or model.gateway.profile
    if profile_override:
        try:
            load_profile(profile_name)
        except ProfileNotFound as exc:
            raise ConfigUnreadable([Finding("config.profile", str(exc).strip("\"'"))]) from None
        gateway = model.gateway.model_copy(update={"profile": profile_name})
        model = model.model_copy(update={"gateway": gateway})
    config = LoadedConfig(cfg_path, model, file_profile=file_profile)
    for name, conn in model.connections.items():
        if conn.remote.peers is None:
            continue
        peer_path = config.resolve(conn.remote.peers)
        try:
            inventory, more = load_peer_file(peer_path, name, conn.remote.id)
        except ConfigUnreadable as exc:
            findings.extend(Finding(f.rule, f.message, path=f"connections.{name}.remote.peers",
                                    value=repr(conn.remote.peers), file=file) for f in exc.findings)
            continue
        config.inventories[name] = inventory
        findings.extend(more)
    findings.extend(_cross_checks(config, file))
    findings.extend(ambiguity_findings(model, file))
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ConfigError(findings)
    config.warnings.extend(findings)
    return config


def profile_names() -> list[str]:
    """Selectable profile names (re-exported for the CLI)."""
    return available_profiles()
