"""A connection's trust: anchors and one revocation source built from its authorities (plain parameters).

``[authorities.NAME]`` in the config (docs/reference.md) maps to ``AuthoritySpec``; the caller resolves paths
relative to the config file. Several anchors may sit in one PEM file or in several authorities (rollover).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from ikeguard.pki.fetch import Fetcher
from ikeguard.pki.loading import PkiLoadError, load_certificates
from ikeguard.pki.revocation import RevocationChecker


@dataclass(frozen=True)
class AuthoritySpec:
    """One authority: the anchor file (PEM bundle or DER), local CRL files, configured CRL/OCSP URIs."""

    name: str
    cacert: Path
    crls: tuple[Path, ...] = ()
    crl_uris: tuple[str, ...] = ()
    ocsp_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trust:
    """What ``validate_chain`` needs from the configuration: anchors and a revocation source."""

    anchors: tuple[x509.Certificate, ...]
    revocation: RevocationChecker = field(repr=False)


def build_trust(authorities: Sequence[AuthoritySpec], *, fetcher: Fetcher | None) -> Trust:
    """Load every authority's anchors and combine their revocation sources; PkiLoadError names the file."""
    anchors: list[x509.Certificate] = []
    for authority in authorities:
        try:
            anchors += load_certificates(authority.cacert.read_bytes())
        except (OSError, PkiLoadError) as exc:
            raise PkiLoadError(f"authority {authority.name}: cannot load {authority.cacert}: {exc}") from exc
    checker = RevocationChecker(
        crl_files=[p for a in authorities for p in a.crls],
        crl_uris=[u for a in authorities for u in a.crl_uris],
        ocsp_uris=[u for a in authorities for u in a.ocsp_uris],
        fetcher=fetcher,
    )
    return Trust(tuple(anchors), checker)
