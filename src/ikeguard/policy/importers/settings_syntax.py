"""strongSwan's settings syntax (``swanctl.conf``, ``strongswan.conf``) parsed into a tree, by hand.

The grammar follows strongSwan's ``libstrongswan/settings/settings_lexer.l`` and ``settings_parser.y`` as
documented in strongswan.conf(5) "SYNTAX" (read, not copied): ``name { ... }`` sections, ``key = value``
pairs whose value runs to the end of the line (leading/trailing blanks dropped) or is a double-quoted string
with ``\\n \\t \\" \\\\`` escapes that may span lines, ``#`` comments, ``include PATTERN`` (a glob
relative to the including file), and ``name : other.path { ... }`` section references (full paths; the
referenced sections' contents are merged in first, resolved after the whole file is read as strongSwan
looks them up lazily). A section given twice is merged; a key given twice keeps the last value.

No library parses this syntax. Input is bounded: ``MAX_BYTES`` per file, ``MAX_DEPTH`` nesting,
``MAX_INCLUDES`` files in all; a violation raises ``SettingsSyntaxError`` with file and line.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_INCLUDES = 256

Tree = dict[str, "str | Tree"]
_NAME = re.compile(r"[^\s{}=:#\"]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\"}


class SettingsSyntaxError(ValueError):
    """Not valid settings syntax; the message names the file and line."""


@dataclass
class Located:
    """Where each key of the tree came from (``"connections.site.local.id"`` -> ``"file:line"``)."""

    lines: dict[str, str] = field(default_factory=dict)


class _Parser:
    def __init__(self, text: str, file: str, located: Located, budget: list[int], base: Path | None) -> None:
        self.text, self.file, self.pos, self.line = text, file, 0, 1
        self.located, self.budget, self.base = located, budget, base

    def error(self, message: str) -> SettingsSyntaxError:
        return SettingsSyntaxError(f"{self.file}:{self.line}: {message}")

    def skip_blank(self, newlines: bool = True) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\n":
                if not newlines:
                    return
                self.line += 1
                self.pos += 1
            elif ch in " \t\r":
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.error(f"expected a name at {self.text[self.pos:self.pos + 20]!r}")
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        self.skip_blank(newlines=False)
        text = self.text
        if self.pos < len(text) and text[self.pos] == '"':
            return self.quoted()
        end = self.pos
        while end < len(text) and text[end] not in "\n#":
            end += 1
        raw = text[self.pos:end]
        self.pos = end
        return raw.strip()

    def quoted(self) -> str:
        out: list[str] = []
        self.pos += 1
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.error("unterminated quoted string")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                break
            if ch == "\\" and self.pos + 1 < len(text):
                nxt = text[self.pos + 1]
                if nxt == "\n":
                    self.line += 1
                    self.pos += 2
                    continue
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                self.pos += 2
                continue
            if ch == "\n":
                self.line += 1
            out.append(ch)
            self.pos += 1
        rest = self.value_rest()
        return "".join(out) + rest

    def value_rest(self) -> str:
        """Anything after a closing quote up to the end of the line (strongSwan concatenates it)."""
        end = self.pos
        while end < len(self.text) and self.text[end] not in "\n#":
            end += 1
        rest = self.text[self.pos:end].rstrip()
        self.pos = end
        return rest

    def body(self, tree: Tree, path: str, depth: int, closing: bool) -> None:
        if depth > MAX_DEPTH:
            raise self.error(f"sections nested deeper than {MAX_DEPTH}")
        while True:
            self.skip_blank()
            if self.pos >= len(self.text):
                if closing:
                    raise self.error("missing '}'")
                return
            if self.text[self.pos] == "}":
                if not closing:
                    raise self.error("unexpected '}'")
                self.pos += 1
                return
            key = self.name()
            line = self.line
            self.skip_blank(newlines=False)
            if key == "include" and self.pos < len(self.text) and self.text[self.pos] not in "={:":
                self.include(self.value(), tree, path, depth)
                continue
            self.skip_blank()
            ch = self.text[self.pos] if self.pos < len(self.text) else ""
            full = f"{path}.{key}" if path else key
            if ch == "=":
                self.pos += 1
                value = self.value()
                tree[key] = value
                self.located.lines[full] = f"{self.file}:{line}"
            elif ch in "{:":
                refs: list[str] = []
                if ch == ":":
                    self.pos += 1
                    refs = [r.strip() for r in self.value_until_brace().split(",") if r.strip()]
                    self.skip_blank()
                if self.pos >= len(self.text) or self.text[self.pos] != "{":
                    raise self.error(f"expected '{{' after section {key!r}")
                self.pos += 1
                existing = tree.get(key)
                section: Tree = existing if isinstance(existing, dict) else {}
                if refs:  # resolved once everything is read, as strongSwan looks them up lazily
                    self.pending.append((section, refs, f"{self.file}:{self.line}", key))
                tree[key] = section
                self.located.lines.setdefault(full, f"{self.file}:{line}")
                self.body(section, full, depth + 1, closing=True)
            else:
                raise self.error(f"expected '=' or '{{' after {key!r}")

    def value_until_brace(self) -> str:
        end = self.text.find("{", self.pos)
        if end < 0:
            raise self.error("expected '{'")
        raw = self.text[self.pos:end]
        self.line += raw.count("\n")
        self.pos = end
        return raw

    def include(self, pattern: str, tree: Tree, path: str, depth: int) -> None:
        base = self.base or Path(".")
        target = pattern if Path(pattern).is_absolute() else str(base / pattern)
        for name in sorted(glob.glob(target)):
            self.budget[0] -= 1
            if self.budget[0] < 0:
                raise self.error(f"more than {MAX_INCLUDES} included files")
            file = Path(name)
            sub = _Parser(read_bounded(file), str(file), self.located, self.budget, file.parent)
            sub.root, sub.pending = self.root, self.pending
            sub.body(tree, path, depth, closing=False)

    root: Tree
    pending: list[tuple[Tree, list[str], str, str]]


def _lookup(tree: Tree, dotted: str) -> Tree | None:
    node: str | Tree = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _merge(into: Tree, other: Tree) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            existing = into.get(key)
            target: Tree = existing if isinstance(existing, dict) else {}
            _merge(target, value)
            into[key] = target
        else:
            into[key] = value


def read_bounded(path: Path, limit: int = MAX_BYTES) -> str:
    """A configuration file's text, refused when larger than ``limit`` (never read whole first)."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SettingsSyntaxError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise SettingsSyntaxError(f"{path}: larger than {limit} bytes")
    return data.decode("utf-8", "replace")


def parse_settings(text: str, *, file: str = "<text>", base: Path | None = None,
                   into: Tree | None = None, located: Located | None = None) -> tuple[Tree, Located]:
    """The tree of ``text`` (merged into ``into`` when given) and where each key came from."""
    if len(text) > MAX_BYTES:
        raise SettingsSyntaxError(f"{file}: larger than {MAX_BYTES} bytes")
    tree: Tree = into if into is not None else {}
    located = located or Located()
    parser = _Parser(text, file, located, [MAX_INCLUDES], base)
    parser.root, parser.pending = tree, []
    parser.body(tree, "", 0, closing=False)
    for section, refs, where, key in parser.pending:
        merged: Tree = {}
        for ref in refs:
            referenced = _lookup(tree, ref)
            if referenced is None or referenced is section:
                raise SettingsSyntaxError(f"{where}: section {key!r} refers to unknown section {ref!r} "
                                          "(references name the full path, e.g. connections.defaults)")
            _merge(merged, referenced)
        _merge(merged, section)
        section.clear()
        section.update(merged)
    return tree, located


def parse_settings_file(path: str | Path, *, into: Tree | None = None,
                        located: Located | None = None) -> tuple[Tree, Located]:
    """Parse a file (includes relative to it)."""
    p = Path(path)
    return parse_settings(read_bounded(p), file=str(p), base=p.parent, into=into, located=located)
