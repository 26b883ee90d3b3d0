"""The gateway's own certificate from an enrolment protocol (``[acme]`` RFC 8555, ``[scep]`` RFC 8894) at
first start, and renewed while it runs; one machinery, an ``Enroller`` per protocol (``acme_renewal.py``,
``scep_renewal.py``).

- First start (``bootstrap``, before the plan is built): when the managed connection's certificate file
  (``local.certs[0]``) does not exist, obtain one for ``local.key`` (a file or a PKCS#11 token key: the CSR is
  signed on the token) and write the chain there; a failure stops ``run`` with one line.
- While running (``CertificateRenewer``): once ``renew_at`` (default 2/3) of the certificate's lifetime has
  passed, obtain a new one in a worker thread (both protocols are blocking HTTP), write it atomically and
  reload the configuration: the certificate's *contents* are not part of a connection's fingerprint, so every
  SA stays and the next IKE_AUTH sends the new certificate (``service/reload.py``). A failed renewal is
  audited (``pki.renewal_failed``, a warning, counted in ``ikeguard_audit_events_total``) and retried after
  ``retry_min``, doubling up to ``retry_max``; the gateway goes on with the certificate it has.
- Every certificate obtained is a ``pki.issued`` record (subject, serial, not_after, identifiers, the CA,
  ``source`` acme or scep, ``renewal``): the issuance log of the evidence pack.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.crypto.pkcs11_key import TokenError, is_pkcs11_uri, open_token_key
from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki.loading import PkiLoadError, load_certificates
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import LoadedConfig, load_config
from ikeguard.policy.model import ConfigModel, Enrollment

log = logging.getLogger("ikeguard.enrollment")

MAX_SLEEP = 300.0  # re-read the certificate at least this often (a file replaced by hand, a clock step)


class EnrollmentStartError(Exception):
    """The first certificate could not be obtained: ``run`` stops with this one line."""


class EnrollmentFailed(Exception):
    """One attempt to obtain a certificate failed; the one-line reason (never a secret)."""


class Enroller(Protocol):
    """One enrolment protocol: its configuration section and how to obtain a certificate (blocking)."""

    name: str  # the section and the audit ``source``: "acme", "scep"
    label: str  # in messages: "ACME", "SCEP"

    def section(self, model: ConfigModel) -> Enrollment | None:
        """The protocol's section of the configuration, None when it is not configured."""
        ...

    def ca(self, section: Any) -> str:
        """The CA as the audit records name it (a URL)."""
        ...

    def identifiers(self, section: Any) -> Sequence[str]:
        """The identifiers the certificate is requested for."""
        ...

    def obtain(self, config: LoadedConfig, section: Any, key: PrivateKey,
               current: x509.Certificate | None) -> list[x509.Certificate]:
        """A certificate chain for ``key`` (leaf first); ``current`` is the certificate in use when renewing.
        Blocking; EnrollmentFailed with a one-line reason."""
        ...


def certificate_path(config: LoadedConfig, section: Enrollment) -> Path:
    """The file the enrolment writes: the connection's ``local.certs[0]``."""
    return config.resolve(config.model.connections[section.connection].local.certs[0])


def write_chain(path: Path, chain: Sequence[x509.Certificate]) -> None:
    """Replace ``path`` atomically with the PEM chain (leaf first), mode 0644: a reader sees the old or the
    new file, never half of one."""
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def issued_event(chain: Sequence[x509.Certificate], section: Enrollment, enroller: Enroller, *,
                 renewal: bool) -> AuditEvent:
    """``pki.issued``: one certificate obtained (docs/reference.md "Audit events")."""
    leaf = chain[0]
    return AuditEvent(EventName.PKI_ISSUED, Outcome.SUCCESS, connection=section.connection,
                      reason=f"certificate {'renewed' if renewal else 'obtained'} from {enroller.label}",
                      cert_subject=leaf.subject.rfc4514_string(), cert_serial=format(leaf.serial_number, "x"),
                      cert_issuer=leaf.issuer.rfc4514_string(),
                      details={"source": enroller.name, "ca": enroller.ca(section), "renewal": renewal,
                               "not_before": leaf.not_valid_before_utc.isoformat(),
                               "not_after": leaf.not_valid_after_utc.isoformat(),
                               "identifiers": ",".join(enroller.identifiers(section))})


def _open_key(config: LoadedConfig, section: Enrollment) -> PrivateKey:
    ref = config.model.connections[section.connection].local.key
    if ref is None:
        raise EnrollmentStartError(f"connections.{section.connection}.local.key: not set")
    try:
        if is_pkcs11_uri(ref):
            return open_token_key(ref, base=config.base_dir)
        data = config.resolve(ref).read_bytes()
        key: Any = serialization.load_pem_private_key(data, password=None)
        return key  # type: ignore[no-any-return]
    except (TokenError, OSError, ValueError, TypeError) as exc:
        raise EnrollmentStartError(f"connections.{section.connection}.local.key: {exc}") from None


def bootstrap(config_path: Path, enrollers: Sequence[Enroller], *,
              profile_override: str | None = None) -> list[AuditEvent]:
    """At ``run`` start: obtain each managed certificate whose file does not exist yet; the audit records
    to write once the trail is open. EnrollmentStartError (one line) when one cannot be obtained."""
    try:
        config = load_config(config_path, profile_override=profile_override)
    except ConfigError:
        return []  # build_plan reports the configuration's problems
    records: list[AuditEvent] = []
    for enroller in enrollers:
        section = enroller.section(config.model)
        if section is None:
            continue
        path = certificate_path(config, section)
        if path.exists():
            continue
        key = _open_key(config, section)
        try:
            chain = enroller.obtain(config, section, key, None)
            write_chain(path, chain)
        except (EnrollmentFailed, OSError) as exc:
            raise EnrollmentStartError(f"[{enroller.name}] cannot obtain the certificate for connection "
                                       f"{section.connection} ({path.name}): {exc}") from None
        log.info("%s: certificate for %s obtained, valid until %s", enroller.label, section.connection,
                 chain[0].not_valid_after_utc.isoformat())
        records.append(issued_event(chain, section, enroller, renewal=False))
    return records


@dataclass
class RenewalState:
    """What ``ikeguard pki acme|scep status`` shows: when the next attempt is due, how the last one went."""

    next_attempt: float = 0.0
    failures: int = 0
    last_error: str = ""
    not_after: float = 0.0


class CertificateRenewer:
    """Renews the certificate an ``Enroller`` manages for a running gateway (see the module docstring)."""

    def __init__(self, gateway: Any, config_path: Path, enroller: Enroller, *,
                 profile_override: str | None = None) -> None:
        self.gateway = gateway
        self.config_path = config_path
        self.enroller = enroller
        self.profile_override = profile_override
        self.state = RenewalState()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def configured(self) -> bool:
        """Whether the running configuration has the enroller's section."""
        return self._section() is not None

    def _section(self) -> tuple[LoadedConfig, Enrollment] | None:
        config: LoadedConfig = self.gateway.plan.config
        section = self.enroller.section(config.model)
        return (config, section) if section is not None else None

    def _current(self) -> x509.Certificate | None:
        found = self._section()
        if found is None:
            return None
        try:
            return load_certificates(certificate_path(*found).read_bytes())[0]
        except (OSError, PkiLoadError, IndexError):
            return None

    def due(self, now: float) -> float:
        """When the current certificate should be renewed (epoch seconds); now when it cannot be read."""
        found = self._section()
        if found is None:
            return float("inf")
        leaf = self._current()
        if leaf is None:
            return now
        start, end = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
        self.state.not_after = end
        return start + found[1].renew_at * (end - start)

    async def run(self) -> None:
        """Until cancelled: sleep until the renewal is due (or the retry after a failure), renew."""
        while True:
            now = time.time()
            at = max(self.due(now), self.state.next_attempt)
            if at == float("inf"):
                return
            if at > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(at - now, MAX_SLEEP))
                if not self._wake.is_set():
                    continue
            try:
                await self.renew()
            except Exception:  # a bug here must not end renewals for good, nor the gateway
                log.exception("%s renewal failed unexpectedly", self.enroller.label)
                self.state.next_attempt = time.time() + 60

    async def renew_now(self) -> dict[str, Any]:
        """``ikeguard pki acme|scep renew``: renew at once; what happened."""
        ok = await self.renew()
        return {"renewed": ok, **self.status()}

    def status(self) -> dict[str, Any]:
        """Next attempt, failures in a row, the last error and the certificate's end (epoch seconds)."""
        return {"next_attempt": self.state.next_attempt or self.due(time.time()),
                "failures": self.state.failures, "last_error": self.state.last_error,
                "not_after": self.state.not_after}

    async def renew(self) -> bool:
        """One renewal attempt; True when a new certificate is in use."""
        found = self._section()
        if found is None:
            return False
        config, section = found
        label = self.enroller.label
        self.due(time.time())  # the current certificate's end, for the failure record's expires_in
        async with self._lock:
            conn = self.gateway.plan.connections.get(section.connection)
            key = conn.local.private_key if conn is not None else None
            try:
                if key is None:
                    raise EnrollmentFailed(f"connection {section.connection} has no private key loaded")
                chain = await asyncio.to_thread(self.enroller.obtain, config, section, key, self._current())
                await asyncio.to_thread(write_chain, certificate_path(config, section), chain)
            except (EnrollmentFailed, OSError) as exc:
                return self._failed(section, str(exc))
            self.gateway.record(issued_event(chain, section, self.enroller, renewal=True))
            from ikeguard.service.reload import reload_gateway

            result = await reload_gateway(self.gateway, self.config_path, admin=self.enroller.name,
                                          profile_override=self.profile_override)
            if result.refused:
                return self._failed(section, f"the renewed certificate was written but the reload was "
                                             f"refused: {result.refused}")
            self.state.failures, self.state.last_error, self.state.next_attempt = 0, "", 0.0
            log.info("%s: certificate of %s renewed, valid until %s", label, section.connection,
                     chain[0].not_valid_after_utc.isoformat())
            return True

    def _failed(self, section: Enrollment, reason: str) -> bool:
        self.state.failures += 1
        self.state.last_error = reason
        delay = min(section.retry_min * 2 ** (self.state.failures - 1), section.retry_max)
        self.state.next_attempt = time.time() + delay
        remaining = self.state.not_after - time.time() if self.state.not_after else 0.0
        self.gateway.record(AuditEvent(
            EventName.PKI_RENEWAL_FAILED, Outcome.FAILURE, connection=section.connection,
            reason=f"{self.enroller.label} renewal failed ({self.state.failures} in a row, next try in "
                   f"{delay:.0f} s): {reason}",
            details={"source": self.enroller.name, "failures": self.state.failures, "retry_in": int(delay),
                     "ca": self.enroller.ca(section), "expires_in": int(remaining)}))
        return False

    def wake(self) -> None:
        """Re-evaluate at once (tests, ``renew`` through the control socket)."""
        self._wake.set()


def utc(ts: float) -> str:
    """An epoch time as RFC 3339 UTC (status output)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")
