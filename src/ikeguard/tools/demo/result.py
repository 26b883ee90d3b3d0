"""What a demo run produced: per-step records, the evidence shown, and the verdict (also as `--json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class StepFailed(Exception):
    """A demo step did not show what it should; `step` names it."""

    def __init__(self, step: str, message: str, *, interrupted: bool = False) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.interrupted = interrupted


@dataclass
class StepRecord:
    """One step as run: its key, title, outcome, duration and a one-line result."""

    key: str
    title: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class DemoResult:
    """What the run showed (for the summary and `--json`)."""

    ok: bool = False
    failed_step: str | None = None
    error: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    workdir: str | None = None
    kept: bool = False
    namespaces: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "ok": self.ok,
            "failed_step": self.failed_step,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "steps": [
                {
                    "step": s.key,
                    "title": s.title,
                    "ok": s.ok,
                    "seconds": round(s.seconds, 2),
                    "detail": s.detail,
                }
                for s in self.steps
            ],
            "evidence": self.evidence,
            "namespaces": self.namespaces,
            "workdir": self.workdir if self.kept else None,
        }
