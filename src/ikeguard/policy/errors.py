"""Structured configuration findings and the ConfigError that carries them.

Every finding names the file, the key path (``connections.merchants.children.card-data.rekey_time``),
the offending value and what is expected, plus the rule id and its sources when a profile rule applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One problem found in a configuration: where, what value, what is expected, which rule says so."""

    rule: str
    message: str
    path: str = ""
    value: str | None = None
    file: str | None = None
    severity: Severity = "error"
    sources: tuple[str, ...] = ()
    fix: str | None = None

    def location(self) -> str:
        """``file: key.path`` (either part may be missing)."""
        parts = [p for p in (self.file, self.path) if p]
        return ": ".join(parts) if parts else "(config)"

    def __str__(self) -> str:
        value = f" = {self.value}" if self.value is not None else ""
        sources = f" ({'; '.join(self.sources)})" if self.sources else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.location()}{value}: {self.message} [{self.rule}]{sources}{fix}"


@dataclass
class ConfigError(Exception):
    """A configuration that cannot be used; carries every finding, not only the first."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.findings)
        head = f"configuration refused: {n} finding{'s' if n != 1 else ''}"
        return head + "".join(f"\n  - {f}" for f in self.findings)


class ConfigUnreadable(ConfigError):
    """The configuration file (or a file it includes) cannot be read or is not TOML at all."""
