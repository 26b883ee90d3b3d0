"""``[acme]``: the gateway's certificate from an ACME CA at first start, and renewed while it runs.

- First start (``bootstrap``, before the plan is built): when the ``[acme]`` connection's certificate file
  (``local.certs[0]``) does not exist, order one for ``local.key`` (a file or a PKCS#11 token key: the CSR is
  signed on the token) and write the chain there; a failure stops ``run`` with one line.
- While running (``AcmeRenewer``): once ``renew_at`` (default 2/3) of the certificate's lifetime has passed,
  order a new one in a worker thread (RFC 8555 is blocking HTTP), write it atomically and reload the
  configuration: the certificate's *contents* are not part of a connection's fingerprint, so every SA stays
  and the next IKE_AUTH sends the new certificate (``service/reload.py``). A failed renewal is audited
  (``pki.renewal_failed``, a warning, counted in ``ikeguard_audit_events_total``) and retried after
  ``retry_min``, doubling up to ``retry_max``; the gateway goes on with the certificate it has.
- Every certificate obtained is a ``pki.issued`` record (subject, serial, not_after, identifiers, the CA's
  directory, ``renewal``): the issuance log of the evidence pack.
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
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.crypto.pkcs11_key import TokenError, is_pkcs11_uri, open_token_key
from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki.acme_client import AcmeError, AcmeOrder, obtain_certificate
from ikeguard.pki.loading import PkiLoadError, load_certificates
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import LoadedConfig, load_config
from ikeguard.policy.model import AcmeSection

log = logging.getLogger("ikeguard.acme")

MAX_SLEEP = 300.0  # re-read the certificate at least this often (a file replaced by hand, a clock step)


class AcmeStartError(Exception):
    """The first certificate could not be obtained: ``run`` stops with this one line."""


def acme_order(config: LoadedConfig, section: AcmeSection) -> AcmeOrder:
    """The order ``[acme]`` describes, paths resolved against the configuration file."""
    host, _, port = section.http01_listen.rpartition(":")
    try:
        listen = (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 - as configured (http-01)
    except ValueError:
        raise AcmeError(f"[acme] http01_listen {section.http01_listen!r}: expected ADDRESS:PORT") from None
    return AcmeOrder(section.directory, config.resolve(section.account_key), tuple(section.identifiers),
                     listen, config.resolve(section.ca_bundle) if section.ca_bundle else None,
                     tuple(section.contact))


def certificate_path(config: LoadedConfig, section: AcmeSection) -> Path:
    """The file ACME writes: the connection's ``local.certs[0]``."""
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


def issued_event(chain: Sequence[x509.Certificate], section: AcmeSection, *, renewal: bool) -> AuditEvent:
    """``pki.issued``: one certificate obtained (docs/reference.md "Audit events")."""
    leaf = chain[0]
    return AuditEvent(EventName.PKI_ISSUED, Outcome.SUCCESS, connection=section.connection,
                      reason=f"certificate {'renewed' if renewal else 'obtained'} from ACME",
                      cert_subject=leaf.subject.rfc4514_string(), cert_serial=format(leaf.serial_number, "x"),
                      cert_issuer=leaf.issuer.rfc4514_string(),
                      details={"source": "acme", "ca": section.directory, "renewal": renewal,
                               "not_before": leaf.not_valid_before_utc.isoformat(),
                               "not_after": leaf.not_valid_after_utc.isoformat(),
                               "identifiers": ",".join(section.identifiers)})


def _open_key(config: LoadedConfig, section: AcmeSection) -> PrivateKey:
    ref = config.model.connections[section.connection].local.key
    if ref is None:
        raise AcmeStartError(f"connections.{section.connection}.local.key: not set")
    try:
        if is_pkcs11_uri(ref):
            return open_token_key(ref, base=config.base_dir)
        data = config.resolve(ref).read_bytes()
        key: Any = serialization.load_pem_private_key(data, password=None)
        return key  # type: ignore[no-any-return]
    except (TokenError, OSError, ValueError, TypeError) as exc:
        raise AcmeStartError(f"connections.{section.connection}.local.key: {exc}") from None


def bootstrap(config_path: Path, *, profile_override: str | None = None) -> list[AuditEvent]:
    """At ``run`` start: obtain the ``[acme]`` certificate when its file does not exist yet; the audit records
    to write once the trail is open. AcmeStartError (one line) when it cannot."""
    try:
        config = load_config(config_path, profile_override=profile_override)
    except ConfigError:
        return []  # build_plan reports the configuration's problems
    section = config.model.acme
    if section is None:
        return []
    path = certificate_path(config, section)
    if path.exists():
        return []
    key = _open_key(config, section)
    try:
        chain = obtain_certificate(acme_order(config, section), key)
        write_chain(path, chain)
    except (AcmeError, OSError) as exc:
        raise AcmeStartError(f"[acme] cannot obtain the certificate for connection {section.connection} "
                             f"({path.name}): {exc}") from None
    log.info("ACME: certificate for %s obtained, valid until %s", section.connection,
             chain[0].not_valid_after_utc.isoformat())
    return [issued_event(chain, section, renewal=False)]


@dataclass
class RenewalState:
    """What ``ikeguard pki acme`` shows: when the next attempt is due and how the last one went."""

    next_attempt: float = 0.0
    failures: int = 0
    last_error: str = ""
    not_after: float = 0.0


class AcmeRenewer:
    """Renews the ``[acme]`` certificate of a running gateway (see the module docstring)."""

    def __init__(self, gateway: Any, config_path: Path, *, profile_override: str | None = None) -> None:
        self.gateway = gateway
        self.config_path = config_path
        self.profile_override = profile_override
        self.state = RenewalState()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def _section(self) -> tuple[LoadedConfig, AcmeSection] | None:
        config: LoadedConfig = self.gateway.plan.config
        section = config.model.acme
        return (config, section) if section is not None else None

    def due(self, now: float) -> float:
        """When the current certificate should be renewed (epoch seconds); 0 when it cannot be read."""
        found = self._section()
        if found is None:
            return float("inf")
        config, section = found
        try:
            leaf = load_certificates(certificate_path(config, section).read_bytes())[0]
        except (OSError, PkiLoadError, IndexError):
            return now
        start, end = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
        self.state.not_after = end
        return start + section.renew_at * (end - start)

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
                log.exception("ACME renewal failed unexpectedly")
                self.state.next_attempt = time.time() + 60

    async def renew_now(self) -> dict[str, Any]:
        """``ikeguard pki acme renew``: renew at once; what happened."""
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
        async with self._lock:
            conn = self.gateway.plan.connections.get(section.connection)
            key = conn.local.private_key if conn is not None else None
            try:
                if key is None:
                    raise AcmeError(f"connection {section.connection} has no private key loaded")
                order = acme_order(config, section)
                chain = await asyncio.to_thread(obtain_certificate, order, key)
                await asyncio.to_thread(write_chain, certificate_path(config, section), chain)
            except (AcmeError, OSError) as exc:
                return self._failed(section, str(exc))
            self.gateway.record(issued_event(chain, section, renewal=True))
            from ikeguard.service.reload import reload_gateway

            result = await reload_gateway(self.gateway, self.config_path, admin="acme",
                                          profile_override=self.profile_override)
            if result.refused:
                return self._failed(section, f"the renewed certificate was written but the reload was "
                                             f"refused: {result.refused}")
            self.state.failures, self.state.last_error, self.state.next_attempt = 0, "", 0.0
            log.info("ACME: certificate of %s renewed, valid until %s", section.connection,
                     chain[0].not_valid_after_utc.isoformat())
            return True

    def _failed(self, section: AcmeSection, reason: str) -> bool:
        self.state.failures += 1
        self.state.last_error = reason
        delay = min(section.retry_min * 2 ** (self.state.failures - 1), section.retry_max)
        self.state.next_attempt = time.time() + delay
        remaining = self.state.not_after - time.time() if self.state.not_after else 0.0
        self.gateway.record(AuditEvent(
            EventName.PKI_RENEWAL_FAILED, Outcome.FAILURE, connection=section.connection,
            reason=f"ACME renewal failed ({self.state.failures} in a row, next try in {delay:.0f} s): "
                   f"{reason}",
            details={"failures": self.state.failures, "retry_in": int(delay), "ca": section.directory,
                     "expires_in": int(remaining)}))
        return False

    def wake(self) -> None:
        """Re-evaluate at once (tests, ``renew`` through the control socket)."""
        self._wake.set()


def utc(ts: float) -> str:
    """An epoch time as RFC 3339 UTC (status output)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")
