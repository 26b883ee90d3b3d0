#!/usr/bin/env python3
"""Generate docs/reference.md, the user-facing contract, from the code it describes.

Generated from the code (so the reference cannot drift from it):
- configuration keys, their types, defaults and limits: the pydantic model (``ikeguard.policy.model``, the
  same model ``ikeguard check --schema`` exports as JSON Schema);
- which profile rules constrain each key, and every profile's rules: the profile data files
  (``ikeguard/policy/profiles/*.toml`` through ``ikeguard.policy.profile``);
- every command, argument and option: click's command tree (``ikeguard.control.cli.main``);
- every audit event and record field: ``ikeguard.audit.events``.

Written by hand, in ``scripts/reference/``: the prose around the tables (``template.md``) and what the
code does not say (``notes.toml``: units and meanings of keys, exit codes per command, the ``--json`` fields,
what each audit event means). The generator refuses notes for keys, commands or events that do not exist, a
command with ``--json`` whose fields are not documented, and an audit event without notes: adding one to the
code without documenting it fails ``make reference`` and ``tests/test_reference_current.py``.

    python scripts/gen_reference.py           # write docs/reference.md (``make reference``)
    python scripts/gen_reference.py --check   # exit 1 with a diff when docs/reference.md is not current

Development tool: not part of the installed package.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import re
import sys
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "reference" / "template.md"
NOTES = ROOT / "scripts" / "reference" / "notes.toml"
OUTPUT = ROOT / "docs" / "reference.md"
PROG = "ikeguard"


class ReferenceError(Exception):
    """The code and the hand-written notes disagree (a key, command or event is undocumented or unknown)."""


# -- small helpers ---------------------------------------------------------------------------------
def cell(text: object) -> str:
    """One markdown table cell: no line breaks, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """Inline code (backticks inside are doubled around)."""
    value = str(text)
    return f"``{value}``" if "`" in value else f"`{value}`"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A markdown table."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def toml_literal(value: Any) -> str:
    """A default value as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyRow:
    """One configuration key."""

    path: str  # normalised: dict entries and list items are "*" (connections.*.children.*.mode)
    key: str
    type: str
    default: str
    limits: str
    unit: str
    meaning: str


@dataclass(frozen=True)
class Section:
    """One TOML table of the configuration (or of a peer inventory file)."""

    header: str
    path: str
    doc: str
    rows: tuple[KeyRow, ...]


def _model_of(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("model"|"dict"|"list", the model) when a field holds tables rather than a value."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:  # an optional table
        present = [a for a in args if a is not type(None)]
        if len(present) == 1:
            return _model_of(present[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return "dict", args[1]
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return "list", args[0]
    return None


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return defs[ref.rsplit("/", 1)[1]] if isinstance(ref, str) else schema


def type_text(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """The type of a JSON Schema property in words an operator reads."""
    prop = _resolve(prop, defs)
    if "anyOf" in prop:
        parts = [type_text(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " | ".join(dict.fromkeys(parts))
    if "enum" in prop:
        return " | ".join(toml_literal(v) for v in prop["enum"])
    kind = prop.get("type")
    description = str(prop.get("description", ""))
    if kind == ["string", "integer"]:
        if description.startswith(("duration", "size")):
            return description.split(":")[0]
        return "string | integer"
    if kind == "array":
        return f"list of {type_text(prop.get('items', {}), defs)}"
    if kind == "string":
        if prop.get("format") == "date-time":
            return "date or date-time"
        return "secret string" if prop.get("writeOnly") or prop.get("format") == "password" else "string"
    return {"integer": "integer", "number": "number", "boolean": "boolean"}.get(str(kind), str(kind))


def _formats(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> list[str]:
    """The value formats the schema describes (e.g. "IPv4 or IPv6 address"), durations and sizes aside."""
    prop = _resolve(prop, defs)
    found: list[str] = []
    for p in prop.get("anyOf", [prop]):
        p = _resolve(p, defs)
        for q in (p, p.get("items", {})):
            text = str(q.get("description", ""))
            if text and not text.startswith(("duration", "size")) and q.get("type") != "object":
                found.append(text)
    return list(dict.fromkeys(found))


def limits_text(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """Bounds the model enforces."""
    prop = _resolve(prop, defs)
    for p in prop.get("anyOf", []):
        if p.get("type") != "null":
            prop = {**_resolve(p, defs), **{k: v for k, v in prop.items() if k != "anyOf"}}
    out = []
    if "minimum" in prop:
        out.append(f">= {prop['minimum']}")
    if "exclusiveMinimum" in prop:
        out.append(f"> {prop['exclusiveMinimum']}")
    if "maximum" in prop:
        out.append(f"<= {prop['maximum']}")
    if "minItems" in prop:
        out.append(f"at least {prop['minItems']} entr{'y' if prop['minItems'] == 1 else 'ies'}")
    if prop.get("minLength") == 1:
        out.append("non-empty")
    return ", ".join(out)


def default_text(info: FieldInfo) -> str:
    """The default as TOML, or "required"."""
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "(not set)"
    annotation = info.rebuild_annotation()
    dumped = TypeAdapter(annotation).dump_python(value, mode="json")
    return toml_literal(dumped)


def _unit(type_name: str) -> str:
    if type_name.startswith("duration"):
        return "seconds; or 90s, 30m, 8h, 1d"
    if type_name.startswith("size"):
        return "K, M, G, T = powers of 1024"
    return ""


def walk_model(model: type[BaseModel], header: str, path: str, notes: Mapping[str, Any],
               used: set[str]) -> Iterator[Section]:
    """The model's own keys as one section, then a section per nested table (depth first)."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    props = schema.get("properties", {})
    rows: list[KeyRow] = []
    nested: list[tuple[str, str, type[BaseModel]]] = []
    for field_name, info in model.model_fields.items():
        name = info.alias or field_name  # the key as written (remote-2)
        key_path = f"{path}.{name}" if path else name
        inner = _model_of(info.annotation)
        if inner is not None:
            kind, sub = inner
            if kind == "model":
                nested.append((f"{header[:-1]}.{name}]" if header else f"[{name}]", key_path, sub))
            elif kind == "dict":
                sub_header = f"{header[:-1]}.{name}.NAME]" if header else f"[{name}.NAME]"
                nested.append((sub_header, f"{key_path}.*", sub))
            else:
                base = header.strip("[]")
                nested.append((f"[[{base + '.' if base else ''}{name}]]", f"{key_path}.*", sub))
            continue
        prop = props.get(name, props.get(field_name, {}))
        note = notes.get(key_path, {})
        if key_path in notes:
            used.add(key_path)
        type_name = type_text(prop, defs)
        formats = _formats(prop, defs)
        meaning = str(note.get("meaning", ""))
        if formats:
            meaning = (meaning + " " if meaning else "") + "Format: " + "; ".join(formats) + "."
        unit = str(note.get("unit", "")) or _unit(type_name)
        rows.append(KeyRow(key_path, name, type_name, default_text(info), limits_text(prop, defs), unit,
                           meaning))
    doc = inspect.cleandoc(model.__doc__ or "")
    yield Section(header, path, doc, tuple(rows))
    for sub_header, sub_path, sub in nested:
        yield from walk_model(sub, sub_header, sub_path, notes, used)


# -- profiles --------------------------------------------------------------------------------------
def _setting_tokens(setting: str) -> list[str]:
    """The key paths a rule's free-text ``setting`` names ("connections.*.proposals (PRF)", "a, b/c")."""
    tokens = []
    for part in setting.split(","):
        text = part.split("(")[0].strip()
        if text.startswith("peer inventory "):
            text = "peer.*." + text.removeprefix("peer inventory ").strip()
        if not text or " " in text:
            continue
        head, _, last = text.rpartition(".")
        for leaf in last.split("/"):
            tokens.append(f"{head}.{leaf}" if head else leaf)
    return tokens


def rule_matches(setting: str, key_path: str) -> bool:
    """Whether a rule's setting names this key (exactly, as a suffix, or as an enclosing table)."""
    for token in _setting_tokens(setting):
        if key_path == token or key_path.endswith("." + token) or key_path.startswith(token + "."):
            return True
    return False


def profile_set_text(names: Iterable[str], every: list[str]) -> str:
    """"all profiles", "all but baseline" or the list."""
    have = [n for n in every if n in set(names)]
    if len(have) == len(every):
        return "all profiles"
    missing = [n for n in every if n not in have]
    if len(missing) <= 2 and len(have) > len(missing):
        return "all but " + ", ".join(missing)
    return ", ".join(have)


def load_profiles() -> tuple[list[str], dict[str, Any]]:
    """Selectable profile names and their loaded profiles."""
    from ikeguard.policy.profile import available_profiles, load_profile

    names = available_profiles()
    return names, {n: load_profile(n) for n in names}


def rule_index(profiles: Mapping[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """Rule id -> (setting, the profiles that have it), in first-seen order."""
    index: dict[str, tuple[str, list[str]]] = {}
    for name, profile in profiles.items():
        for rule in profile.rules:
            _setting, have = index.setdefault(rule.id, (rule.setting, []))
            have.append(name)
    return index


def constrained_by(key_path: str, index: Mapping[str, tuple[str, list[str]]], every: list[str]) -> str:
    """The rules (and profiles) that judge this key."""
    found = [f"{rule_id} ({profile_set_text(have, every)})" for rule_id, (setting, have) in index.items()
             if rule_matches(setting, key_path)]
    return "; ".join(found) if found else "-"


def _params_text(params: Mapping[str, Any]) -> str:
    return "; ".join(f"{k} = {toml_literal(v)}" for k, v in params.items())


def render_profiles() -> list[str]:
    """The profiles, a rule x profile matrix, then each profile's rules with their parameters."""
    from ikeguard.policy.report import enforcement_points

    names, profiles = load_profiles()
    out = ["### Profiles", ""]
    out += table(["profile", "title", "rules"],
                 [[code(n), p.title, len(p.rules)] for n, p in profiles.items()])
    out += ["", "### Which profile has which rule", ""]
    index = rule_index(profiles)
    rows = []
    for rule_id, (setting, have) in index.items():
        severities = []
        for n in names:
            if n in have:
                r = profiles[n].rule(rule_id)
                severities.append(r.severity if r.waivable else f"{r.severity}, not waivable")
            else:
                severities.append("-")
        rows.append([code(rule_id), setting, *severities])
    out += table(["rule", "setting", *(code(n) for n in names)], rows)
    for name, profile in profiles.items():
        out += ["", f"### Profile `{name}`: {profile.title}", ""]
        if profile.description:
            out += [cell(profile.description), ""]
        rows = []
        for r in profile.rules:
            where = ", ".join(enforcement_points(r)) or "not implemented"
            rows.append([code(r.id), r.severity, r.title, _params_text(r.params) or "-", "; ".join(r.sources),
                         where])
        out += table(["rule", "severity", "title", "parameters", "sources", "enforced at"], rows)
    return out


def render_config(notes: Mapping[str, Any]) -> list[str]:
    """Every key of the configuration file and of a peer inventory file."""
    from ikeguard.policy.model import ConfigModel, PeerFile

    names, profiles = load_profiles()
    index = rule_index(profiles)
    used: set[str] = set()
    sections = [*walk_model(ConfigModel, "", "", notes, used), *walk_model(PeerFile, "", "", notes, used)]
    unknown = sorted(set(notes) - used)
    if unknown:
        raise ReferenceError(f"notes.toml [keys] names keys the model does not have: {', '.join(unknown)}")
    out: list[str] = []
    for section in sections:
        if not section.rows:
            continue
        header = section.header or "(top level)"
        out += [f"### `{header}`", ""]
        doc = re.sub(r"^``[^`]*``( in a peer inventory file)?: ", "", section.doc.split("\n\n")[0])
        if section.path.startswith("peer"):
            doc = f"A peer inventory file (named by `remote.peers`) is a list of these tables: {doc}"
        if doc:
            out += [cell(doc[:1].upper() + doc[1:]), ""]
        rows = [[code(r.key), r.type,
                 code(r.default) if r.default not in ("required", "(not set)") else r.default,
                 " ".join(x for x in (r.unit, f"({r.limits})" if r.limits else "") if x) or "-",
                 constrained_by(r.path, index, names), r.meaning or "-"] for r in section.rows]
        out += table(["key", "type", "default", "unit, limits", "judged by rule (profiles)", "meaning"], rows)
        out.append("")
    return out[:-1]


# -- command line ----------------------------------------------------------------------------------
def _param_type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    t = param.type
    if isinstance(t, click.Choice):
        return " | ".join(map(str, t.choices))
    if isinstance(t, click.Path):
        return "directory" if not t.file_okay else "file" if not t.dir_okay else "path"
    if isinstance(t, click.IntRange | click.FloatRange):
        base = "integer" if isinstance(t, click.IntRange) else "number"
        bounds = [f">= {t.min}" if t.min is not None else "", f"<= {t.max}" if t.max is not None else ""]
        return f"{base} ({', '.join(b for b in bounds if b)})"
    return {"integer": "integer", "float": "number", "text": "text", "boolean": "boolean"}.get(t.name, t.name)


def _opt_names(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return ", ".join(code(o) for o in [*param.opts, *param.secondary_opts])
    return code(param.human_readable_name)


def walk_commands(cmd: click.Command,
                  path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``cmd`` (groups before their subcommands, alphabetical)."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=PROG)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk_commands(sub, (*path, name))


def _usage(path: tuple[str, ...], cmd: click.Command) -> str:
    ctx = click.Context(cmd, info_name=" ".join((PROG, *path)))
    return " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])


def render_cli(notes: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(the command sections, the names of the commands that take --json)."""
    from ikeguard.control.cli import main

    out: list[str] = []
    with_json: list[str] = []
    seen: set[str] = set()
    for path, cmd in walk_commands(main):
        name = " ".join(path)
        seen.add(name)
        title = f"`{PROG}{' ' + name if name else ''}`"
        out += [f"### {title}", "", "```", _usage(path, cmd), "```", ""]
        help_text = inspect.cleandoc(cmd.help or "").split("\n\n")[0]
        if help_text:
            out += [cell(help_text), ""]
        rows = []
        for param in cmd.params:
            if isinstance(param, click.Option) and param.hidden:
                continue
            if param.name == "as_json":
                with_json.append(name)
            required = "required" if param.required else ""
            repeat = "repeatable" if getattr(param, "multiple", False) else ""
            default = param.to_info_dict().get("default")  # None when not set (click >= 8.3: no UNSET)
            default = None if callable(default) else default
            is_flag = isinstance(param, click.Option) and param.is_flag
            show_default = default is not None and default is not False and default != () and not is_flag
            given = ", ".join(x for x in (required, repeat) if x) or (code(default) if show_default else "-")
            fallback = "argument" if isinstance(param, click.Argument) else "-"
            meaning = getattr(param, "help", None) or fallback
            rows.append([_opt_names(param), _param_type(param), given, meaning])
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=PROG)
            subs = [s for s in cmd.list_commands(ctx)]
            rows.append([code("COMMAND"), " | ".join(subs), "required", "subcommand (below)"])
        rows.append([", ".join(code(o) for o in ("-h", "--help")), "flag", "-", "show the help and exit"])
        out += table(["option / argument", "type", "required / default", "meaning"], rows)
        exit_note = notes.get(name, {}).get("exit")
        if exit_note:
            out += ["", f"Exit codes: {cell(exit_note)}"]
        out.append("")
    unknown = sorted(set(notes) - seen)
    if unknown:
        raise ReferenceError(f"notes.toml [commands] names commands the CLI lacks: {', '.join(unknown)}")
    return out[:-1], with_json


def render_json(notes: Mapping[str, Any], with_json: list[str]) -> list[str]:
    """The ``--json`` output of every command that has it."""
    missing = [c for c in with_json if c not in notes]
    if missing:
        raise ReferenceError(f"--json output not documented in notes.toml [json]: {', '.join(missing)}")
    extra = sorted(set(notes) - set(with_json))
    if extra:
        raise ReferenceError(f"notes.toml [json] documents commands without --json: {', '.join(extra)}")
    out: list[str] = []
    for name in with_json:
        entry = notes[name]
        out += [f"### `{PROG} {name} --json`", "", cell(entry["shape"]), ""]
        fields = entry.get("fields", [])
        if fields:
            out += table(["field", "type", "meaning"], [[code(f[0]), f[1], f[2]] for f in fields])
            out.append("")
    return out[:-1]


# -- audit events ----------------------------------------------------------------------------------
def render_events(notes: Mapping[str, Any]) -> list[str]:
    """The record fields, then every event name with its severity and meaning."""
    from ikeguard.audit.events import EVENT_FIELDS, EventName, Outcome, severity

    field_notes = notes.get("fields", {})
    event_notes = notes.get("events", {})
    missing = [f for f in EVENT_FIELDS if f not in field_notes]
    if missing:
        raise ReferenceError(f"audit record fields without notes.toml [events.fields]: {', '.join(missing)}")
    out = ["### Record fields", ""]
    rows = [[code(name), *field_notes[name]] for name in ("seq", "time")]
    rows += [[code(name), *field_notes[name]] for name in EVENT_FIELDS]
    rows += [[code(name), *field_notes[name]] for name in ("prev", "hash", "seal")]
    out += table(["field", "type", "meaning"], rows)
    names = [e.value for e in EventName]
    undocumented = [n for n in names if n not in event_notes]
    if undocumented:
        raise ReferenceError(f"audit events without notes.toml [events.events]: {', '.join(undocumented)}")
    unknown = sorted(set(event_notes) - set(names))
    if unknown:
        raise ReferenceError(f"notes.toml documents audit events that do not exist: {', '.join(unknown)}")
    out += ["", "### Events", ""]
    rows = []
    for event in EventName:
        note = event_notes[event.value]
        ok, bad = severity(event, Outcome.SUCCESS), severity(event, Outcome.FAILURE)
        rows.append([code(event.value), f"{ok} / {bad}", note["when"],
                     ", ".join(code(d) for d in note.get("details", [])) or "-"])
    out += table(["event (syslog MSGID)", "severity success / failure", "when", "details"], rows)
    return out


# -- the document ----------------------------------------------------------------------------------
def render() -> str:
    """docs/reference.md as it must be."""
    notes = tomllib.loads(NOTES.read_text(encoding="utf-8"))
    cli, with_json = render_cli(notes.get("commands", {}))
    parts = {
        "@@CONFIG@@": render_config(notes.get("keys", {})),
        "@@PROFILES@@": render_profiles(),
        "@@CLI@@": cli,
        "@@JSON@@": render_json(notes.get("json", {}), with_json),
        "@@EVENTS@@": render_events(notes.get("events", {})),
    }
    out: list[str] = []
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        out.extend(parts.pop(line.strip()) if line.strip() in parts else [line])
    if parts:
        raise ReferenceError(f"template.md lacks the markers {', '.join(parts)}")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/reference.md, or with --check compare it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 (with a diff) if docs/reference.md is stale")
    args = parser.parse_args(argv)
    try:
        text = render()
    except ReferenceError as exc:
        print(f"gen_reference: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       "docs/reference.md", "generated"))
            print("docs/reference.md is not current: run `make reference`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
