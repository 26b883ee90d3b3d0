"""Prometheus metrics of a running gateway, read from the gateway itself at scrape time (no second copy of
any state): per connection configured vs up, IKE/Child SA counts, traffic counters that survive rekeys,
IKE exchanges and failures by reason, certificate expiry (own, trust anchors, and per connection the peer
certificate that expires first), local CRL files' nextUpdate, the audit trail's queue depth, and the data
plane's drops that belong to no SA (``no_sa``, ``no_policy``, ``unknown_spi``, ``malformed``; label: reason
only).

Labels are the connection and its peer group (the connection's remote identity, a pattern for a template
connection), never an SA or a single peer, so the series count stays bounded with thousands of peers.
The HTTP endpoint binds only the configured address (``[gateway] metrics = "127.0.0.1:9469"``).

At scale (100,000 IKE SAs, issue 22) a scrape builds no per-SA view: the per-SA families (IKE/Child SA
counts, live traffic, the soonest peer certificate) come from one census of the engine's SAs
(``service.queries.SaCensus``) taken on the event loop in slices of ``CENSUS_STEP`` SAs with the loop free
to run between slices, so neither the scrape nor the gateway waits seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from ikeguard.service.queries import SaCensus, census_steps, take_census

log = logging.getLogger("ikeguard.metrics")

SNAPSHOT_TIMEOUT = 5.0  # seconds the scrape waits for the gateway's event loop
CENSUS_STEP = 2000  # IKE SAs counted per slice on the event loop (~5-10 ms) before other work runs


@dataclass
class CertExpiry:
    """One certificate the gateway uses: whose it is and when it ends."""

    kind: str  # "local" (a connection's own), "authority" (a trust anchor), "peer" (soonest of its peers')
    name: str  # connection or authority name
    subject: str
    not_after: dt.datetime


@dataclass
class GatewaySnapshot:
    """Everything one scrape shows, copied on the gateway's event loop so the HTTP thread never reads
    structures the loop is changing."""

    conns: list[dict[str, Any]]
    ike_sas: dict[tuple[str, str], int]  # (connection, state) -> IKE SAs
    child_sas: dict[tuple[str, str], int]  # (connection, state) -> Child SAs
    exchanges: dict[tuple[str, str, str], int]
    failures: dict[tuple[str, str], int]
    traffic: dict[str, tuple[int, int, int, int]]
    certs: list[CertExpiry]
    audit_pending: int | None
    audit_spool: dict[str, int]
    audit_healthy: bool | None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    dataplane_drops: dict[str, int] = field(default_factory=dict)  # reason -> packets, not tied to an SA
    ocsp_stapled: dict[tuple[str, str, str], int] = field(default_factory=dict)  # RFC 4806 staples
    crls: list[CrlNextUpdate] = field(default_factory=list)
    ha: dict[str, Any] | None = None  # `ha status` when [ha] is enabled (docs/ha.md)
    acme: dict[str, Any] | None = None  # `pki acme status` when [acme] is set (docs/pki.md)
    scep: dict[str, Any] | None = None  # `pki scep status` when [scep] is set


@dataclass
class CrlNextUpdate:
    """A local CRL file of an authority and its nextUpdate (RFC 5280 §5.1.2.5); None when it has none."""

    authority: str
    file: str
    issuer: str
    next_update: dt.datetime | None


class _AnchorFiles:
    """Trust-anchor files parsed once per (path, mtime, size): a renewed file shows its new expiry."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int], list[x509.Certificate]]] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> list[x509.Certificate]:
        try:
            info = path.stat()
        except OSError:
            return []
        key = (info.st_mtime_ns, info.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
        try:
            data = path.read_bytes()
            certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data \
                else [x509.load_der_x509_certificate(data)]
        except (OSError, ValueError):
            certs = []
        with self._lock:
            self._cache[path] = (key, certs)
        return certs



def _renewal(gateway: Any, name: str) -> dict[str, Any] | None:
    """The ``[acme]`` / ``[scep]`` renewal state when that section is configured."""
    renewer = getattr(gateway, name, None)
    return renewer.status() if renewer is not None and renewer.configured() else None

def _certificates(gateway: Any, anchors: _AnchorFiles) -> list[CertExpiry]:
    plan = gateway.plan
    out: list[CertExpiry] = []
    for name, conn in getattr(plan, "connections", {}).items():
        certs = getattr(conn.local, "certs", ())
        if certs:
            cert = certs[0]
            out.append(CertExpiry("local", name, cert.subject.rfc4514_string(), cert.not_valid_after_utc))
    config = getattr(plan, "config", None)
    if config is None:
        return out
    files: dict[str, str] = {name: a.cacert for name, a in config.model.authorities.items()}
    for conn in config.model.connections.values():  # trust anchors named by file in remote.cacerts
        files.update({ref: ref for ref in conn.remote.cacerts if ref not in config.model.authorities})
    for name, relative in files.items():
        for cert in anchors.load(config.resolve(relative)):
            out.append(CertExpiry("authority", name, cert.subject.rfc4514_string(), cert.not_valid_after_utc))
    return out


def _peer_certificates(census: SaCensus) -> list[CertExpiry]:
    """Per connection, the peer certificate that expires first among its established IKE SAs (one series
    per connection, never one per peer: the series count stays bounded with thousands of peers)."""
    return [CertExpiry("peer", name, subject, dt.datetime.fromtimestamp(not_after, dt.UTC))
            for name, (not_after, subject) in census.peer_certs.items()]


def census_of_views(views: Iterable[dict[str, Any]]) -> SaCensus:
    """The census of a gateway without an engine to walk (a ``sas()`` list of views: the control tests'
    recording gateway)."""
    census = SaCensus()
    for sa in views:
        name = str(sa.get("name", ""))
        census.ike[(name, str(sa.get("state", "")))] += 1
        row = census.traffic.setdefault(name or "(none)", [0, 0, 0, 0])
        for child in sa.get("children", []):
            census.child[(name, str(child.get("state", "")))] += 1
            for index, key in enumerate(("bytes_in", "bytes_out", "packets_in", "packets_out")):
                row[index] += int(child.get(key, 0))
    return census


class _CrlFiles:
    """Local CRL files (``[authorities.X] crls``) parsed once per (path, mtime, size)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int], x509.CertificateRevocationList | None]] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> x509.CertificateRevocationList | None:
        try:
            info = path.stat()
        except OSError:
            return None
        key = (info.st_mtime_ns, info.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
        try:
            data = path.read_bytes()
            crl: x509.CertificateRevocationList | None = (
                x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data))
        except (OSError, ValueError):
            crl = None
        with self._lock:
            self._cache[path] = (key, crl)
        return crl


_CRLS = _CrlFiles()


def _crls(gateway: Any) -> list[CrlNextUpdate]:
    config = getattr(getattr(gateway, "plan", None), "config", None)
    if config is None:
        return []
    out = []
    for name, authority in config.model.authorities.items():
        for relative in authority.crls:
            crl = _CRLS.load(config.resolve(relative))
            if crl is not None:
                out.append(CrlNextUpdate(name, relative, crl.issuer.rfc4514_string(), crl.next_update_utc))
    return out


def dataplane_drops(plane: Any) -> dict[str, int]:
    """Packets the data plane dropped without an SA to charge them to, by reason: the userspace plane's
    ``SaTable.drops`` (summed over the per-IP-version planes); empty for planes that keep none (``none``;
    ``xfrm`` counts them in the kernel, /proc/net/xfrm_stat)."""
    members = getattr(plane, "members", None)
    planes = list(members.values()) if isinstance(members, dict) else [plane]
    total: Counter[str] = Counter()
    for member in planes:
        drops = getattr(getattr(member, "table", None), "drops", None)
        if isinstance(drops, dict):
            total.update(dict(drops))  # one C-level copy: the plane may count while we read
    return dict(total)


def take_snapshot(gateway: Any, anchors: _AnchorFiles | None = None,
                  census: SaCensus | None = None) -> GatewaySnapshot:
    """Copy what the metrics show (call on the gateway's event loop); ``census``: the SAs counted already
    (in slices, :meth:`GatewayCollector.snapshot`), else counted here in one go."""
    if census is None:
        census = take_census(gateway) if getattr(gateway, "engine", None) is not None \
            else census_of_views(gateway.sas())
    stats = gateway.stats
    audit = gateway.audit
    pending = getattr(audit, "pending", None)
    spool = audit.spool_depth() if hasattr(audit, "spool_depth") else {}
    healthy = getattr(audit, "healthy", None)
    return GatewaySnapshot(
        conns=gateway.conns(),
        ike_sas=dict(census.ike),
        child_sas=dict(census.child),
        exchanges=dict(stats.exchanges),
        failures=dict(stats.failures),
        ocsp_stapled=dict(getattr(stats, "ocsp_stapled", {})),
        traffic=dict(stats.traffic_totals(census.traffic)),
        certs=[*_certificates(gateway, anchors or _AnchorFiles()), *_peer_certificates(census)],
        crls=_crls(gateway),
        audit_pending=pending if isinstance(pending, int) else None,
        audit_spool=dict(spool),
        audit_healthy=None if healthy is None else bool(healthy),
        dataplane_drops=dataplane_drops(getattr(gateway, "dataplane", None)),
        ha=gateway.ha.status() if getattr(gateway, "ha", None) is not None else None,
        acme=_renewal(gateway, "acme"),
        scep=_renewal(gateway, "scep"),
    )


class GatewayCollector(Collector):
    """A Prometheus collector over a live gateway."""

    def __init__(self, gateway: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.gateway = gateway
        self.loop = loop
        self._anchors = _AnchorFiles()

    async def snapshot_here(self) -> GatewaySnapshot:
        """A snapshot taken on the running loop (the gateway's), the SAs counted in slices."""
        return await self._snapshot_on_loop()

    async def _snapshot_on_loop(self) -> GatewaySnapshot:
        census: SaCensus | None = None
        if getattr(self.gateway, "engine", None) is not None:
            census = SaCensus()
            for _ in census_steps(self.gateway, census, CENSUS_STEP):
                await asyncio.sleep(0)  # the loop serves IKE between slices
        return take_snapshot(self.gateway, self._anchors, census)

    def snapshot(self) -> GatewaySnapshot:
        """A consistent copy: taken on the gateway's loop when called from another thread."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return take_snapshot(self.gateway, self._anchors)
        try:
            if asyncio.get_running_loop() is loop:
                return take_snapshot(self.gateway, self._anchors)
        except RuntimeError:
            pass
        future = asyncio.run_coroutine_threadsafe(self._snapshot_on_loop(), loop)
        try:
            return future.result(SNAPSHOT_TIMEOUT)
        except BaseException:
            future.cancel()  # no census left running for a scrape that gave up
            raise

    def collect(self) -> Iterator[Metric]:
        """Build every metric family from one snapshot."""
        try:
            snap = self.snapshot()
        except Exception:
            log.exception("metrics snapshot failed")
            up = GaugeMetricFamily("ikeguard_metrics_snapshot_ok", "1 when the gateway answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        yield from build_metrics(snap)


def _peer_groups(conns: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {str(c["name"]): str(c.get("remote_id") or "%any") for c in conns}


def build_metrics(snap: GatewaySnapshot) -> Iterator[Metric]:
    """The metric families of one snapshot (pure: testable without HTTP)."""
    groups = _peer_groups(snap.conns)
    ok = GaugeMetricFamily("ikeguard_metrics_snapshot_ok", "1 when the gateway answered the scrape")
    ok.add_metric([], 1)
    yield ok

    configured = GaugeMetricFamily("ikeguard_connection_configured", "1 per connection in the configuration",
                                   labels=["connection", "peer_group"])
    quarantine = GaugeMetricFamily("ikeguard_connection_quarantined",
                                   "1 while the compliance profile keeps the connection disabled",
                                   labels=["connection", "peer_group"])
    up = GaugeMetricFamily("ikeguard_connection_up", "1 while the connection has an established IKE SA",
                           labels=["connection", "peer_group"])
    peers = GaugeMetricFamily("ikeguard_connection_peers", "Peers in the connection's inventory (enabled)",
                              labels=["connection", "peer_group"])
    for c in snap.conns:
        name = str(c["name"])
        labels = [name, groups[name]]
        quarantined = str(c.get("status", "")).startswith("quarantined")
        configured.add_metric(labels, 1)
        quarantine.add_metric(labels, 1 if quarantined else 0)
        up.add_metric(labels, 1 if int(c.get("ike_sas_up", 0)) > 0 else 0)
        peers.add_metric(labels, int(c.get("peers", 0)))
    yield configured
    yield quarantine
    yield up
    yield peers

    ike, child = snap.ike_sas, snap.child_sas
    ike_family = GaugeMetricFamily("ikeguard_ike_sas", "IKE SAs by connection and state",
                                   labels=["connection", "peer_group", "state"])
    for (name, state), n in sorted(ike.items()):
        ike_family.add_metric([name, groups.get(name, ""), state], n)
    yield ike_family
    child_family = GaugeMetricFamily("ikeguard_child_sas", "Child SAs by connection and state",
                                     labels=["connection", "peer_group", "state"])
    for (name, state), n in sorted(child.items()):
        child_family.add_metric([name, groups.get(name, ""), state], n)
    yield child_family

    names = ("bytes_in", "bytes_out", "packets_in", "packets_out")
    helps = ("ESP payload bytes received", "ESP payload bytes sent", "ESP packets received",
             "ESP packets sent")
    traffic = [CounterMetricFamily(f"ikeguard_{n}", f"{h} (survives rekeys)",
                                   labels=["connection", "peer_group"])
               for n, h in zip(names, helps, strict=True)]
    for name, values in sorted(snap.traffic.items()):
        for family, value in zip(traffic, values, strict=True):
            family.add_metric([name, groups.get(name, "")], value)
    yield from traffic

    exchanges = CounterMetricFamily("ikeguard_ike_exchanges", "IKE exchanges by connection, type and outcome",
                                    labels=["connection", "exchange", "outcome"])
    for (name, exchange, outcome), n in sorted(snap.exchanges.items()):
        exchanges.add_metric([name, exchange, outcome], n)
    yield exchanges
    failures = CounterMetricFamily("ikeguard_ike_failures", "Failed IKE setups by connection and reason",
                                   labels=["connection", "reason"])
    for (name, reason), n in sorted(snap.failures.items()):
        failures.add_metric([name, reason], n)
    yield failures
    stapled = CounterMetricFamily("ikeguard_ocsp_stapled",
                                  "OCSP responses stapled in IKE_AUTH (RFC 4806) by connection, direction "
                                  "(received from the peer / sent by us) and status",
                                  labels=["connection", "direction", "status"])
    for (name, direction, status), n in sorted(snap.ocsp_stapled.items()):
        stapled.add_metric([name, direction, status], n)
    yield stapled

    expiry = GaugeMetricFamily("ikeguard_certificate_expiry_seconds",
                               "Seconds until the certificate's notAfter (negative: expired)",
                               labels=["kind", "name", "subject"])
    for cert in snap.certs:
        expiry.add_metric([cert.kind, cert.name, cert.subject], (cert.not_after - snap.now).total_seconds())
    yield expiry
    crl_family = GaugeMetricFamily("ikeguard_crl_next_update_seconds",
                                   "Seconds until a local CRL file's nextUpdate (negative: stale, RFC 5280 "
                                   "§5.1.2.5)", labels=["authority", "file", "issuer"])
    for crl in snap.crls:
        if crl.next_update is not None:
            crl_family.add_metric([crl.authority, crl.file, crl.issuer],
                                  (crl.next_update - snap.now).total_seconds())
    yield crl_family
    staple_family = GaugeMetricFamily("ikeguard_ocsp_staple_valid_seconds",
                                      "Seconds until the nextUpdate of the OCSP response for our certificate "
                                      "that a connection staples (RFC 4806); absent while none is cached",
                                      labels=["connection", "status"])
    for conn in snap.conns:
        staple = conn.get("ocsp_staple")
        if isinstance(staple, dict) and staple.get("next_update") is not None:
            staple_family.add_metric([str(conn.get("name", "")), str(staple.get("status", ""))],
                                     float(staple["next_update"]) - snap.now.timestamp())
    yield staple_family

    drops = CounterMetricFamily("ikeguard_dataplane_drops",
                                "Packets the data plane dropped without an SA (no_sa, no_policy, "
                                "unknown_spi, malformed); per-SA drops are in `ikeguard sas`",
                                labels=["reason"])
    for reason, n in sorted(snap.dataplane_drops.items()):
        drops.add_metric([reason], n)
    yield drops

    if snap.ha is not None:
        yield from _ha_metrics(snap.ha)
    for name, renewal in (("acme", snap.acme), ("scep", snap.scep)):
        if renewal is not None:
            failing = GaugeMetricFamily(f"ikeguard_{name}_renewal_failures",
                                        f"{name.upper()} renewals of the [{name}] certificate failed in a "
                                        "row (0: the last one succeeded or none was due yet); with "
                                        "pki.renewal_failed warnings")
            failing.add_metric([], int(renewal.get("failures", 0)))
            yield failing
    if snap.audit_pending is not None:
        queue = GaugeMetricFamily("ikeguard_audit_queue_depth", "Audit events recorded but not yet on disk")
        queue.add_metric([], snap.audit_pending)
        yield queue
    spool = GaugeMetricFamily("ikeguard_audit_spool_depth", "Audit records not yet confirmed by the sink",
                              labels=["sink"])
    for sink, depth in sorted(snap.audit_spool.items()):
        spool.add_metric([sink], depth)
    yield spool
    if snap.audit_healthy is not None:
        healthy = GaugeMetricFamily("ikeguard_audit_store_healthy",
                                    "1 while the audit store can write (else new SAs are refused)")
        healthy.add_metric([], 1 if snap.audit_healthy else 0)
        yield healthy


def _ha_metrics(ha: dict[str, Any]) -> Iterator[Metric]:
    """High availability (docs/ha.md): role, replication age and failures, lease (fencing), last takeover."""
    active = GaugeMetricFamily("ikeguard_ha_active", "1 while this node is the active one of the HA pair")
    active.add_metric([], 1 if ha.get("role") == "active" else 0)
    yield active
    if ha.get("last_sync") is not None:
        last = GaugeMetricFamily("ikeguard_ha_last_sync_timestamp_seconds",
                                 "When this node last replicated the SA state to etcd (epoch seconds)")
        last.add_metric([], float(ha["last_sync"]))
        yield last
    synced = GaugeMetricFamily("ikeguard_ha_synced_sas", "IKE SAs written by the last replication")
    synced.add_metric([], int(ha.get("synced_sas", 0)))
    yield synced
    failures = CounterMetricFamily("ikeguard_ha_sync_failures", "Replications to etcd that failed")
    failures.add_metric([], int(ha.get("sync_failures", 0)))
    yield failures
    lease = ha.get("lease")
    if lease is not None:  # fencing (service/ha/fence.py)
        held = GaugeMetricFamily("ikeguard_ha_lease_held",
                                 "1 while this node holds the etcd leader lease (it may send only then)")
        held.add_metric([], 1 if lease.get("held") else 0)
        yield held
        left = GaugeMetricFamily("ikeguard_ha_lease_remaining_seconds",
                                 "Seconds of certain leadership left before this node must stop sending")
        left.add_metric([], float(lease.get("remaining", 0.0)))
        yield left
    healthy = GaugeMetricFamily("ikeguard_ha_healthy",
                                "0 when keepalived wants this node active but it cannot hold the lease")
    healthy.add_metric([], 1 if ha.get("healthy", True) else 0)
    yield healthy
    takeover = ha.get("last_takeover")
    if takeover and not takeover.get("refused"):
        took = GaugeMetricFamily("ikeguard_ha_takeover_seconds", "Duration of the last takeover")
        took.add_metric([], float(takeover.get("seconds", 0.0)))
        yield took
        restored = GaugeMetricFamily("ikeguard_ha_takeover_restored_sas",
                                     "IKE SAs restored by the last takeover")
        restored.add_metric([], int(takeover.get("restored", 0)))
        yield restored


class _Families(Collector):
    """Metric families built already (one exposition)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(families: Iterable[Metric]) -> str:
    """The Prometheus text format of ``families`` (``prometheus_client.generate_latest``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()


def start_metrics(gateway: Any, host: str, port: int) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` only; returns the stop function. Call from the gateway's loop
    (scrapes then read the gateway on that loop)."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway, loop))
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
