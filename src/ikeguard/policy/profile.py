"""Compliance profiles as data: TOML files in ``policy/profiles/`` loaded via importlib.resources.

A profile is a table of rules; each rule names a check (implemented in ``policy.checks``), its
parameters (e.g. the allowed ENCR transforms), severity, the setting it governs, its sources and the
PCI DSS / NIST SP 800-53 controls it satisfies. ``extends`` inherits another profile's rules; a rule
with the same id replaces the inherited one; ``remove`` drops inherited rules. Files starting with
``_`` are building blocks, not selectable profiles.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ikeguard.wire.iana import EncrId, IntegId, KeId, PrfId, TransformType
from ikeguard.wire.transforms import Transform, is_ke_type

RuleSeverity = Literal["error", "warning"]
ProtocolName = Literal["ike", "esp"]
TYPE_NAMES: dict[str, type[EncrId] | type[PrfId] | type[IntegId] | type[KeId]] = {
    "ENCR": EncrId, "PRF": PrfId, "INTEG": IntegId, "KE": KeId, "ADDKE": KeId,
}


class ProfileNotFound(LookupError):
    """No profile of that name ships with ikeguard."""


class _RuleData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    severity: RuleSeverity = "error"
    setting: str
    check: str
    params: dict[str, Any] = Field(default_factory=dict)
    sources: list[str] = Field(min_length=1)
    pci: list[str] = Field(default_factory=list)
    nist: list[str] = Field(default_factory=list)
    fix: str
    waivable: bool = True


class _ProfileData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    title: str
    version: str = ""
    description: str = ""
    extends: str | None = None
    remove: list[str] = Field(default_factory=list)
    rule: list[_RuleData] = Field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    """One profile rule: what it checks, how bad a violation is, where it comes from."""

    id: str
    title: str
    severity: RuleSeverity
    setting: str
    check: str
    params: Mapping[str, Any]
    sources: tuple[str, ...]
    pci: tuple[str, ...]
    nist: tuple[str, ...]
    fix: str
    waivable: bool = True

    @property
    def source_text(self) -> str:
        """Sources joined for one table cell."""
        return "; ".join(self.sources)


@dataclass(frozen=True)
class TransformRule:
    """Compiled form of a ``transforms`` rule: which (id, key length) are allowed / warned."""

    rule: Rule
    protocol: ProtocolName
    type_name: str
    allowed: frozenset[tuple[int, int | None]]
    warn: Mapping[tuple[int, int | None], str]

    def covers(self, protocol: ProtocolName, transform: Transform) -> bool:
        """Whether this rule governs ``transform`` in ``protocol``."""
        if protocol != self.protocol:
            return False
        t = int(transform.type)
        if self.type_name == "ADDKE":
            return is_ke_type(t) and t != TransformType.KE
        return t == int(TransformType[self.type_name])

    @staticmethod
    def _key_match(keys: frozenset[tuple[int, int | None]] | Mapping[tuple[int, int | None], str],
                   transform: Transform) -> tuple[int, int | None] | None:
        for key in ((transform.id, transform.key_length), (transform.id, None)):
            if key in keys:
                return key
        return None

    def is_allowed(self, transform: Transform) -> bool:
        """Allowed by this rule (NONE for INTEG/KE is judged by the suite rules, not here)."""
        if transform.id == 0 and self.type_name in ("INTEG", "KE", "ADDKE"):
            return True
        return self._key_match(self.allowed, transform) is not None

    def warning(self, transform: Transform) -> str | None:
        """The sunset warning for an allowed-but-flagged transform, if any."""
        key = self._key_match(self.warn, transform)
        return self.warn[key] if key is not None else None


def _parse_transform_name(type_name: str, text: str, profile: str, rule_id: str) -> tuple[int, int | None]:
    registry = TYPE_NAMES[type_name]
    name, _, length = text.partition("/")
    try:
        ident = int(registry[name])
    except KeyError:
        close = difflib.get_close_matches(name, [m.name for m in registry], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"profile {profile}, rule {rule_id}: unknown {type_name} transform {name!r}{hint}") \
            from None
    return ident, int(length) if length else None


@dataclass(frozen=True)
class Profile:
    """A named set of rules; the single source for load-time checks, wire selection and the report."""

    name: str
    title: str
    description: str
    rules: tuple[Rule, ...]
    transform_rules: tuple[TransformRule, ...] = field(default=(), repr=False)
    version: str = ""  # declared in the profile file; bumped when its rules change
    digest: str = ""  # SHA-256 of the resolved rules (inherited ones included): what was really applied
    # Decisions derived from the (immutable) rules, memoized by policy.proposals / engine.proposals; keys are
    # namespaced by the caller, each namespace bounded by ``memo_put`` (peers choose what they offer).
    memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def memo_put(self, namespace: str, key: Any, value: Any, limit: int = 4096) -> None:
        """Remember ``value`` for (namespace, key); a namespace that reaches ``limit`` starts over."""
        table = self.memo.setdefault(namespace, {})
        if len(table) >= limit:
            table.clear()
        table[key] = value

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (KeyError if the profile has none)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def has_rule(self, rule_id: str) -> bool:
        """Whether the profile contains ``rule_id``."""
        return any(r.id == rule_id for r in self.rules)

    def rules_for(self, check: str) -> list[Rule]:
        """All rules implemented by the named check."""
        return [r for r in self.rules if r.check == check]


def _compile_transform_rules(profile: str, rules: Sequence[Rule]) -> tuple[TransformRule, ...]:
    compiled = []
    for r in rules:
        if r.check != "transforms":
            continue
        protocol = r.params.get("protocol")
        type_name = r.params.get("type")
        if protocol not in ("ike", "esp") or type_name not in TYPE_NAMES:
            raise ValueError(f"profile {profile}, rule {r.id}: params need protocol ike|esp and type "
                             f"{'|'.join(TYPE_NAMES)}")
        allowed = frozenset(_parse_transform_name(type_name, t, profile, r.id) for t in r.params["allowed"])
        warn = {_parse_transform_name(type_name, t, profile, r.id): str(msg)
                for t, msg in dict(r.params.get("warn", {})).items()}
        compiled.append(TransformRule(r, protocol, type_name, allowed, warn))
    return tuple(compiled)


def _read(name: str) -> _ProfileData:
    base = resources.files("ikeguard.policy.profiles")
    resource = base.joinpath(f"{name}.toml")
    if not resource.is_file():
        raise ProfileNotFound(name)
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    try:
        return _ProfileData.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"profile data file {name}.toml is invalid: {exc}") from exc


def _resolve_rules(name: str, seen: tuple[str, ...] = ()) -> tuple[_ProfileData, list[Rule]]:
    if name in seen:
        raise ValueError(f"profile {name}: 'extends' cycle {' -> '.join((*seen, name))}")
    data = _read(name)
    rules: list[Rule] = []
    if data.extends:
        _, rules = _resolve_rules(data.extends, (*seen, name))
    removed = set(data.remove)
    rules = [r for r in rules if r.id not in removed]
    for rd in data.rule:
        new = Rule(rd.id, rd.title, rd.severity, rd.setting, rd.check, dict(rd.params), tuple(rd.sources),
                   tuple(rd.pci), tuple(rd.nist), rd.fix, rd.waivable)
        for i, old in enumerate(rules):
            if old.id == new.id:
                rules[i] = new
                break
        else:
            rules.append(new)
    return data, rules


def available_profiles() -> list[str]:
    """Names of the selectable profiles shipped in the package."""
    base = resources.files("ikeguard.policy.profiles")
    return sorted(p.name[:-5] for p in base.iterdir()
                  if p.name.endswith(".toml") and not p.name.startswith("_"))


@lru_cache(maxsize=32)
def load_profile(name: str) -> Profile:
    """Load a shipped profile by name; ``ProfileNotFound`` names the close matches."""
    if name.startswith("_") or name not in available_profiles():
        close = difflib.get_close_matches(name, available_profiles(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProfileNotFound(f"unknown profile {name!r}{hint}; available: {', '.join(available_profiles())}")
    data, rules = _resolve_rules(name)
    ids = [r.id for r in rules]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"profile {name}: duplicate rule ids {sorted(duplicates)}")
    return Profile(data.name, data.title, data.description, tuple(rules),
                   _compile_transform_rules(name, rules), data.version, rules_digest(rules))


def rules_digest(rules: Sequence[Rule]) -> str:
    """SHA-256 over the resolved rules in a canonical JSON form (changes whenever any rule changes)."""
    canonical = json.dumps([{**dataclasses.asdict(r), "params": dict(r.params)} for r in rules],
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
