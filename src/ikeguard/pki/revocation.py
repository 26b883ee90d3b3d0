"""Revocation status from local CRL files, CRL distribution points and OCSP responders, with caches.

Order: local CRL files (no network), then OCSP URIs (the certificate's AIA, then configured ones), then CRL
URIs (the certificate's distribution points, then configured ones); the first source that can decide wins.
Local files are re-read when their mtime or size changes; fetched CRLs and OCSP answers are cached until
their nextUpdate; a URI that failed is not retried for ``failure_backoff``. ``now`` is always a parameter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import AuthorityInformationAccessOID

from ikeguard.pki.crl import CrlUnusable, crl_decides
from ikeguard.pki.fetch import Fetcher, FetchError
from ikeguard.pki.loading import PkiLoadError, load_crl
from ikeguard.pki.ocsp import OcspUnusable, build_request, evaluate_response
from ikeguard.pki.reasons import RevocationState, RevocationStatus


class RevocationSource(Protocol):
    """Anything that can tell the revocation status of ``cert`` issued by ``issuer`` at ``now``."""

    def status(
        self, cert: x509.Certificate, issuer: x509.Certificate, *, now: datetime
    ) -> RevocationStatus: ...


class NoRevocation:
    """No revocation information at all: every status is unknown (no URI tried)."""

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, *, now: datetime) -> RevocationStatus:
        """Always UNKNOWN."""
        return RevocationStatus(RevocationState.UNKNOWN, detail="no revocation source configured")


def crl_uris_of(cert: x509.Certificate) -> list[str]:
    """HTTP(S) URIs of the certificate's CRL distribution points (RFC 5280 §4.2.1.13)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [
        name.value
        for point in points
        for name in point.full_name or []
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def ocsp_uris_of(cert: x509.Certificate) -> list[str]:
    """OCSP responder URIs from the certificate's authorityInfoAccess (RFC 5280 §4.2.2.1)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        desc.access_location.value
        for desc in access
        if desc.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(desc.access_location, x509.UniformResourceIdentifier)
    ]


MAX_CACHED = 50_000  # OCSP answers and CRLs kept; expired ones are dropped first when full


@dataclass(frozen=True)
class _Cached:
    value: x509.CertificateRevocationList | bytes
    until: datetime | None


class RevocationChecker:
    """A ``RevocationSource`` for one authority (or several): local CRLs plus fetched CRLs and OCSP."""

    def __init__(
        self,
        *,
        crl_files: Sequence[Path] = (),
        crl_uris: Sequence[str] = (),
        ocsp_uris: Sequence[str] = (),
        fetcher: Fetcher | None = None,
        failure_backoff: timedelta = timedelta(seconds=30),
        clock_skew: timedelta = timedelta(0),
    ) -> None:
        self.crl_files = tuple(Path(p) for p in crl_files)
        self.crl_uris = tuple(crl_uris)
        self.ocsp_uris = tuple(ocsp_uris)
        self.fetcher = fetcher
        self.failure_backoff = failure_backoff
        self.clock_skew = clock_skew
        self._files: dict[Path, tuple[tuple[int, int], x509.CertificateRevocationList | None]] = {}
        self._fetched: dict[tuple[str, int, str], _Cached] = {}
        self._failed_until: dict[str, datetime] = {}

    # -- local files --------------------------------------------------------------------------------
    def _file_crl(self, path: Path) -> x509.CertificateRevocationList | None:
        try:
            stat = os.stat(path)
        except OSError:
            self._files.pop(path, None)
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._files.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            crl: x509.CertificateRevocationList | None = load_crl(path.read_bytes())
        except (OSError, PkiLoadError):
            crl = None
        self._files[path] = (key, crl)
        return crl

    # -- fetching -----------------------------------------------------------------------------------
    def _fetch(self, uri: str, now: datetime, *, data: bytes | None = None,
               content_type: str | None = None) -> bytes | None:
        if self.fetcher is None:
            return None
        blocked = self._failed_until.get(uri)
        if blocked is not None and now < blocked:
            return None
        try:
            body = self.fetcher.fetch(uri, data=data, content_type=content_type)
        except FetchError:
            self._failed_until[uri] = now + self.failure_backoff
            return None
        self._failed_until.pop(uri, None)
        return body

    def _remember(self, key: tuple[str, int, str], entry: _Cached, now: datetime) -> None:
        if len(self._fetched) >= MAX_CACHED:
            self._fetched = {k: v for k, v in self._fetched.items() if v.until is not None and v.until > now}
            if len(self._fetched) >= MAX_CACHED:
                self._fetched.clear()
        self._fetched[key] = entry

    def _cached(self, key: tuple[str, int, str], now: datetime) -> _Cached | None:
        entry = self._fetched.get(key)
        if entry is None or entry.until is None or entry.until <= now:
            return None
        return entry

    def _ocsp(self, uri: str, cert: x509.Certificate, issuer: x509.Certificate,
              now: datetime) -> tuple[RevocationState | None, str]:
        key = (uri, cert.serial_number, issuer.fingerprint(hashes.SHA256()).hex())
        entry = self._cached(key, now)
        der = entry.value if entry is not None and isinstance(entry.value, bytes) else None
        if der is None:
            der = self._fetch(uri, now, data=build_request(cert, issuer),
                              content_type="application/ocsp-request")
            if der is None:
                return None, f"OCSP {uri}: no answer"
        try:
            answer = evaluate_response(der, cert, issuer, now=now, skew=self.clock_skew)
        except OcspUnusable as exc:
            self._fetched.pop(key, None)
            return None, f"OCSP {uri}: {exc}"
        if answer.state is not RevocationState.UNKNOWN:
            self._remember(key, _Cached(der, answer.next_update), now)
            return answer.state, f"OCSP {uri}"
        return None, f"OCSP {uri}: responder does not know the certificate"

    def _crl_uri(self, uri: str, cert: x509.Certificate, issuer: x509.Certificate,
                 now: datetime) -> tuple[RevocationState | None, str]:
        key = (uri, 0, "")
        entry = self._cached(key, now)
        crl = entry.value if entry is not None and not isinstance(entry.value, bytes) else None
        if crl is None:
            body = self._fetch(uri, now)
            if body is None:
                return None, f"CRL {uri}: no answer"
            try:
                crl = load_crl(body)
            except PkiLoadError as exc:
                self._failed_until[uri] = now + self.failure_backoff
                return None, f"CRL {uri}: {exc}"
            self._remember(key, _Cached(crl, crl.next_update_utc), now)
        if crl.issuer != cert.issuer:
            return None, ""  # a configured URI of another authority: not applicable to this certificate
        try:
            return crl_decides(crl, cert, issuer, now=now, skew=self.clock_skew), f"CRL {uri}"
        except CrlUnusable as exc:
            return None, f"CRL {uri}: {exc}"

    # -- the source ---------------------------------------------------------------------------------
    def status(self, cert: x509.Certificate, issuer: x509.Certificate, *, now: datetime) -> RevocationStatus:
        """First decisive answer of local CRL files, OCSP URIs, CRL URIs; else UNKNOWN and what failed."""
        problems: list[str] = []
        good_from = ""
        for path in self.crl_files:
            crl = self._file_crl(path)
            if crl is None or crl.issuer != cert.issuer:
                continue
            try:
                state = crl_decides(crl, cert, issuer, now=now, skew=self.clock_skew)
            except CrlUnusable as exc:
                problems.append(f"CRL file {path}: {exc}")
                continue
            if state is RevocationState.REVOKED:
                return RevocationStatus(state, source=f"CRL file {path}")
            good_from = good_from or f"CRL file {path}"
        if good_from:
            return RevocationStatus(RevocationState.GOOD, source=good_from)
        ocsp_uris = list(dict.fromkeys([*ocsp_uris_of(cert), *self.ocsp_uris]))
        crl_uris = list(dict.fromkeys([*crl_uris_of(cert), *self.crl_uris]))
        lookups = [(u, self._ocsp) for u in ocsp_uris] + [(u, self._crl_uri) for u in crl_uris]
        uri_failed = False
        for uri, lookup in lookups:
            uri_state, note = lookup(uri, cert, issuer, now)
            if uri_state is not None:
                return RevocationStatus(uri_state, source=note)
            if note:
                problems.append(note)
                uri_failed = True
        return RevocationStatus(
            RevocationState.UNKNOWN,
            detail="; ".join(problems) or "no CRL or OCSP source covers this certificate",
            uri_failed=uri_failed,
        )

