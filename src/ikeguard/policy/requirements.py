"""The requirement ids profiles may cite (``policy/requirements.toml``) and how a citation is read.

A citation is ``"<document> <id>"`` with an optional parenthesised note: ``PCI DSS 4.0.1 4.2.1``,
``RFC 8247 §2.1``, ``PCI DSS 4.0.1 3.7.4 (by analogy: ...)``, ``CNSA 2.0 (NSA CSA PP-22-1338)``. A note
starting
"by analogy" makes it an *analogy*: the requirement is about something else and explains the rule; it gets no
verdict. Sources starting "ikeguard contract" or "ikeguard recommendation" are the product's own rules. Every
other citation must name a document and id listed in requirements.toml; documents marked ``verdicts`` get a
verdict per requirement in the report (:func:`ikeguard.policy.report.Report.requirements`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

CitationKind = Literal["requirement", "analogy", "recommendation"]
PCI = "PCI DSS 4.0.1"
NIST_800_53 = "NIST SP 800-53"
OWN = ("ikeguard contract", "ikeguard recommendation")


@dataclass(frozen=True)
class Document:
    """A standard, guideline or RFC with the ids ikeguard cites from it."""

    name: str
    title: str
    verdicts: bool
    ids: dict[str, str]


@dataclass(frozen=True)
class Citation:
    """One source of a rule, read."""

    text: str
    kind: CitationKind
    document: str | None = None
    id: str = ""
    note: str = ""

    @property
    def requirement(self) -> tuple[str, str] | None:
        """(document, id) when this citation is a requirement the rule is judged against."""
        return (self.document, self.id) if self.kind == "requirement" and self.document else None


@lru_cache(maxsize=1)
def documents() -> dict[str, Document]:
    """Every citable document, by name."""
    text = resources.files("ikeguard.policy").joinpath("requirements.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)["documents"]
    return {name: Document(name, str(d.get("title", name)), bool(d.get("verdicts", False)),
                           {str(k): str(v) for k, v in d.get("ids", {}).items()})
            for name, d in data.items()}


def parse_citation(text: str) -> Citation:
    """Read a citation; ``ValueError`` names what is wrong (unknown document or id)."""
    if text.startswith(OWN):
        return Citation(text, "recommendation")
    body, note = text, ""
    if text.endswith(")") and " (" in text:
        body, _, note = text.partition(" (")
        note = note[:-1]
    docs = documents()
    longest_first = sorted(docs, key=len, reverse=True)
    name = next((n for n in longest_first if body == n or body.startswith(n + " ")), None)
    if name is None:
        raise ValueError(f"{text!r}: no such document in policy/requirements.toml")
    ident = body[len(name):].strip()
    if ident not in docs[name].ids:
        raise ValueError(f"{text!r}: {name} has no id {ident!r} in policy/requirements.toml")
    kind: CitationKind = "analogy" if note.startswith("by analogy") else "requirement"
    return Citation(text, kind, name, ident, note)


def requirement_title(document: str, ident: str) -> str:
    """The short title of a requirement ("" when unknown)."""
    doc = documents().get(document)
    return doc.ids.get(ident, "") if doc is not None else ""


def has_verdicts(document: str) -> bool:
    """Whether the report gives this document's requirements a verdict."""
    doc = documents().get(document)
    return doc is not None and doc.verdicts
