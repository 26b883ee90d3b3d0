"""The verdict a certificate validator gives the engine (defined here, below the engine, so ``pki`` never
imports ``engine``; ``engine.validator`` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CertVerdict:
    """Outcome of validating a peer's certificate chain for an identity."""

    accepted: bool
    reason: str = ""
    not_after: datetime | None = None  # of the end-entity (caps the IKE SA's lifetime)
    ocsp_stapled: str = ""  # what the peer's stapled OCSP responses did (RFC 4806), "" when it sent none
