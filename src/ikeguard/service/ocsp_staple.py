"""Our own OCSP status for RFC 4806 stapling (``connections.<conn>.ocsp = "reply"`` or ``"both"``).

For each such connection with a certificate, the OCSP response for our end-entity certificate is fetched
from its authorityInfoAccess OCSP URI, else from the ``ocsp_uris`` of the configured authorities, in a worker
thread (``UrllibFetcher``, never on the event loop), verified like any OCSP answer (``pki.ocsp``: signed by
the issuer or its delegated responder, thisUpdate/nextUpdate), and put into ``EngineContext.ocsp_staples``,
from which the engine staples it when a peer asks (engine/ocsp_stapling.py). It is fetched again half-way to
its nextUpdate (at least every ``max_refresh``), after a failure with a doubling back-off; an answer past
its nextUpdate is dropped, never sent. The issuer is the next certificate of ``local.certs`` or a configured
anchor that signed ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from ikeguard.engine.context import OcspStaple
from ikeguard.engine.settings import ConnectionSettings
from ikeguard.pki.engine_validator import ConnectionTrust
from ikeguard.pki.fetch import Fetcher, FetchError
from ikeguard.pki.http_fetch import UrllibFetcher
from ikeguard.pki.ocsp import OcspUnusable, build_request, evaluate_response
from ikeguard.pki.ocsp_staple import MAX_STAPLE_BYTES
from ikeguard.pki.reasons import RevocationState
from ikeguard.pki.revocation import ocsp_uris_of

log = logging.getLogger(__name__)

REPLIES = frozenset({"reply", "both"})


@dataclass(frozen=True)
class StapleTarget:
    """One connection's certificate, its issuer and the OCSP URIs to ask."""

    connection: str
    cert: x509.Certificate
    issuer: x509.Certificate
    uris: tuple[str, ...]


def _issuer_of(cert: x509.Certificate, candidates: Iterable[x509.Certificate]) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            log.debug("our certificate is not signed by %s", candidate.subject.rfc4514_string())
            continue
        return candidate
    return None


def staple_targets(
    connections: Iterable[ConnectionSettings], trusts: Mapping[str, ConnectionTrust]
) -> list[StapleTarget]:
    """The connections that staple (``ocsp = reply|both``) with a certificate whose issuer we hold."""
    anchors = [a for t in trusts.values() for a in t.anchors]
    configured = [u for t in trusts.values() for u in getattr(t.revocation, "ocsp_uris", ())]
    out = []
    for conn in connections:
        if conn.ocsp not in REPLIES or not conn.local.certs:
            continue
        cert = conn.local.certs[0]
        issuer = _issuer_of(cert, [*conn.local.certs[1:], *anchors])
        if issuer is None:
            log.warning("connection %s: ocsp = %s but the issuer of our certificate is neither in "
                        "local.certs nor an authority: no OCSP response to staple", conn.name, conn.ocsp)
            continue
        uris = tuple(dict.fromkeys([*ocsp_uris_of(cert), *configured]))
        if not uris:
            log.warning("connection %s: ocsp = %s but our certificate names no OCSP responder and no "
                        "authority has ocsp_uris: no OCSP response to staple", conn.name, conn.ocsp)
            continue
        out.append(StapleTarget(conn.name, cert, issuer, uris))
    return out


def fetch_staple(target: StapleTarget, fetcher: Fetcher, now: datetime) -> tuple[OcspStaple | None, str]:
    """Blocking (a worker thread): ask each URI in turn; the first verified GOOD/REVOKED answer, or why
    not."""
    request = build_request(target.cert, target.issuer)
    problems = []
    for uri in target.uris:
        try:
            der = fetcher.fetch(uri, data=request, content_type="application/ocsp-request")
            if len(der) > MAX_STAPLE_BYTES:  # what a peer (and we) would parse; IKE_AUTH must stay small
                raise OcspUnusable(f"response of {len(der)} octets, more than {MAX_STAPLE_BYTES} to staple")
            answer = evaluate_response(der, target.cert, target.issuer, now=now)
        except (FetchError, OcspUnusable) as exc:
            problems.append(f"{uri}: {exc}")
            continue
        if answer.state is RevocationState.UNKNOWN:
            problems.append(f"{uri}: the responder does not know our certificate")
            continue
        until = answer.next_update.timestamp() if answer.next_update is not None else None
        return OcspStaple(der, until, answer.state.value), uri
    return None, "; ".join(problems)


class OcspStapler:
    """Keeps ``staples`` (the engine's ``ocsp_staples``) fresh for every stapling connection."""

    def __init__(self, staples: dict[str, OcspStaple], *, fetcher: Fetcher | None = None,
                 max_refresh: float = 3600.0, min_refresh: float = 30.0, max_backoff: float = 600.0) -> None:
        self.staples = staples
        self._fetcher: Fetcher = fetcher or UrllibFetcher()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ikeguard-ocsp-staple")
        self._targets: dict[str, StapleTarget] = {}
        self._due: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.max_refresh, self.min_refresh, self.max_backoff = max_refresh, min_refresh, max_backoff

    def configure(self, connections: Iterable[ConnectionSettings],
                  trusts: Mapping[str, ConnectionTrust]) -> None:
        """(Re)read the stapling connections; new or changed ones are fetched at once."""
        targets = {t.connection: t for t in staple_targets(connections, trusts)}
        for name in list(self.staples):
            old = self._targets.get(name)
            new = targets.get(name)
            if new is None or old is None or old.cert != new.cert or old.uris != new.uris:
                self.staples.pop(name, None)
        for name, target in targets.items():
            if self._targets.get(name) != target:
                self._due[name] = 0.0
                self._backoff.pop(name, None)
        self._due = {n: d for n, d in self._due.items() if n in targets}
        self._targets = targets
        self._wake.set()

    def start(self) -> None:
        """Run the refresh loop on the running event loop (nothing to do without stapling connections)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ikeguard-ocsp-staple")

    async def close(self) -> None:
        """Stop refreshing; a fetch in a worker thread ends by its own timeout. The loop also stops by
        itself once it sees ``_closed``: Python 3.11's ``wait_for`` may swallow a cancellation that
        arrives together with a wake-up (a reload right before shutdown)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            now = time.time()
            for name, held in list(self.staples.items()):
                if held.next_update is not None and held.next_update <= now:
                    del self.staples[name]
                    log.warning("connection %s: our stapled OCSP response passed its nextUpdate: not sent "
                                "until a new one is fetched", name)
            due = [n for n, at in self._due.items() if at <= now]
            for name in due:
                target = self._targets.get(name)
                if target is None or self._closed:
                    continue
                fetched: tuple[OcspStaple | None, str] = await loop.run_in_executor(
                    self._pool, fetch_staple, target, self._fetcher, datetime.now(UTC))
                staple, where = fetched
                self._schedule(target, staple, where)
            self._wake.clear()
            wait = min([*(at - time.time() for at in self._due.values()), self.max_refresh])
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def _schedule(self, target: StapleTarget, staple: OcspStaple | None, where: str) -> None:
        name = target.connection
        if name not in self._targets or self._targets[name] != target:
            return  # reconfigured meanwhile
        now = time.time()
        serial = format(target.cert.serial_number, "x")
        if staple is None:
            backoff = min(self._backoff.get(name, self.min_refresh / 2) * 2, self.max_backoff)
            self._backoff[name] = backoff
            self._due[name] = now + backoff
            log.warning("connection %s: OCSP status of our certificate (serial %s) not obtained, retry in "
                        "%.0f s: %s", name, serial, backoff, where)
            return
        self._backoff.pop(name, None)
        self.staples[name] = staple
        left = (staple.next_update - now) if staple.next_update is not None else self.max_refresh
        self._due[name] = now + min(max(left / 2, self.min_refresh), self.max_refresh)
        until = (datetime.fromtimestamp(staple.next_update, UTC).isoformat()
                 if staple.next_update is not None else "no nextUpdate")
        fingerprint = target.cert.fingerprint(hashes.SHA256()).hex()[:16]
        log.info("connection %s: OCSP response for our certificate (serial %s, sha256 %s...) from %s: %s, "
                 "valid until %s; stapled when a peer asks (RFC 4806)", name, serial, fingerprint, where,
                 staple.status, until)
