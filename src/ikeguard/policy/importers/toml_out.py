"""TOML text of an imported configuration tree (tomllib reads TOML; nothing in the standard library or our
dependencies writes it, and the tree is only dicts, lists of scalars and scalars)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE.match(name) else _string(name)


def _string(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", out)
    return f'"{out}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return _string(str(value))


def dump_toml(tree: Mapping[str, Any], header: str = "") -> str:
    """TOML text of a tree of dicts, lists of scalars and scalars (tables after the keys of each level)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]

    def table(path: list[str], node: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in node.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in node.items() if isinstance(v, dict)]
        if path and (scalars or not tables):
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in tables:
            table([*path, k], v)

    table([], tree)
    return "\n".join(lines).lstrip("\n") + "\n"
