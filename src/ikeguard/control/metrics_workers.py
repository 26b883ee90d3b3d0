"""Prometheus metrics of a multi-worker gateway (``[gateway] workers`` > 1, issue 22): one endpoint, the
configured ``metrics`` address, served by the supervisor with values that are right across the workers.

At each scrape the supervisor asks every worker for its exposition over the worker's private control socket
(``metrics``, :meth:`ikeguard.control.server.ControlServer._metrics`: the same families as a one-process
gateway, :func:`ikeguard.control.metrics.build_metrics`), parses them with ``prometheus_client.parser`` and
merges them family by family with the rules of ``prometheus_client``'s multiprocess mode (``MERGE``):

* counters (traffic, exchanges, failures, staples, drops): summed; a worker that died keeps counting with
  the last values it reported (its successor, told apart by its process id, starts from 0 and adds), so a
  summed counter never goes backwards on a worker's restart (what the multiprocess mode's counter files do);
* SA gauges (``ikeguard_ike_sas``, ``ikeguard_child_sas``) and the audit queue: summed over the live workers
  (``livesum``): a worker that does not answer (dead, being restarted) contributes nothing, so its SAs vanish
  from the gauges at once (``mark_process_dead``);
* per-connection state (configured, quarantined, up, peers) and renewal failures: the largest (``max``):
  every worker runs the same configuration, a connection is up when it is up in any worker;
* seconds left (certificates, CRLs, staples) and health (audit store, snapshot): the smallest (``min``):
  the soonest expiry, unhealthy when any part is.

Labels stay as each worker gives them (connection, peer group, state ...), never a worker or pid label. The
audit trail's writer is the supervisor's: its queue, spool and health are added as one more source.
``ikeguard_workers`` (configured) and ``ikeguard_workers_answering`` tell a scrape with a worker missing.

Why not ``prometheus_client``'s multiprocess mode itself (``PROMETHEUS_MULTIPROC_DIR``,
``MultiProcessCollector``): it only exports values that each process keeps writing into its mmap files, and
ikeguard's metrics are read from the gateway at scrape time by a custom collector (no second copy of any
state; the 100,000-SA census runs only when someone scrapes) which the multiprocess mode does not support;
it also cannot remove a label set (a connection removed by a reload would stay exported). Merging the
workers' own expositions keeps one definition of every family (``build_metrics``) and the one-worker path
unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from ikeguard.control.metrics import GatewaySnapshot, build_metrics, exposition

log = logging.getLogger("ikeguard.metrics")

SCRAPE_TIMEOUT = 8.0  # seconds a scrape waits for the workers (each snapshot gives up after 5 s)
SUM, LIVESUM, MAX, MIN = "sum", "livesum", "max", "min"
MERGE: dict[str, str] = {
    "ikeguard_ike_sas": LIVESUM, "ikeguard_child_sas": LIVESUM, "ikeguard_audit_queue_depth": LIVESUM,
    "ikeguard_audit_spool_depth": LIVESUM,
    "ikeguard_connection_configured": MAX, "ikeguard_connection_quarantined": MAX,
    "ikeguard_connection_up": MAX, "ikeguard_connection_peers": MAX,
    "ikeguard_acme_renewal_failures": MAX, "ikeguard_scep_renewal_failures": MAX,
    "ikeguard_certificate_expiry_seconds": MIN, "ikeguard_crl_next_update_seconds": MIN,
    "ikeguard_ocsp_staple_valid_seconds": MIN, "ikeguard_audit_store_healthy": MIN,
    "ikeguard_metrics_snapshot_ok": MIN,
}
_Key = tuple[str, str, tuple[tuple[str, str], ...]]  # (family, sample name, labels)


def _families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def _samples(family: Metric) -> Iterator[tuple[_Key, float]]:
    for sample in family.samples:
        yield (family.name, sample.name, tuple(sorted(sample.labels.items()))), float(sample.value)


class WorkersMetrics:
    """Merges the workers' expositions; keeps the counters of workers that ended (see the module doc)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._last: dict[int, tuple[int, dict[_Key, float]]] = {}  # worker -> (pid, its counter samples)
        self._retired: dict[_Key, float] = {}  # counters of workers that ended
        self._meta: dict[str, tuple[str, str]] = {}  # family -> (type, help), as last seen

    def merge(self, answers: dict[int, tuple[int, str]], own: str = "") -> list[Metric]:
        """``answers``: worker -> (pid, exposition) of the workers that answered; ``own``: the supervisor's
        families (its audit writer). The merged families."""
        gauges: dict[_Key, list[float]] = {}
        counters: dict[_Key, float] = dict(self._retired)
        order: list[str] = []
        sources = [(index, pid, text) for index, (pid, text) in sorted(answers.items())]
        for index in range(self.workers):
            if index in answers:
                continue
            last = self._last.get(index)  # not answering: its counters stay at what it last reported
            for key, value in (last[1] if last else {}).items():
                counters[key] = counters.get(key, 0.0) + value
        for index, pid, text in [*sources, (-1, 0, own)]:
            mine: dict[_Key, float] = {}
            for family in _families(text):
                self._meta[family.name] = (family.type, family.documentation)
                if family.name not in order:
                    order.append(family.name)
                for key, value in _samples(family):
                    if family.type == "counter":
                        mine[key] = mine.get(key, 0.0) + value
                    else:
                        gauges.setdefault(key, []).append(value)
            for key, value in mine.items():
                counters[key] = counters.get(key, 0.0) + value
            if index >= 0:
                previous = self._last.get(index)
                if previous is not None and previous[0] != pid:  # restarted: its predecessor's counts stay
                    for key, value in previous[1].items():
                        self._retired[key] = self._retired.get(key, 0.0) + value
                        counters[key] = counters.get(key, 0.0) + value
                self._last[index] = (pid, mine)
        for key in self._retired:
            if key[0] not in order:
                order.append(key[0])
        return self._build(order, gauges, counters, len(answers))

    def _build(self, order: list[str], gauges: dict[_Key, list[float]], counters: dict[_Key, float],
               answering: int) -> list[Metric]:
        out: dict[str, Metric] = {}
        for name in order:
            kind, documentation = self._meta.get(name, ("untyped", ""))
            out[name] = Metric(name, documentation, kind)
        for (name, sample, labels), values in sorted(gauges.items()):
            rule = MERGE.get(name, MAX)
            value = max(values) if rule == MAX else min(values) if rule == MIN else sum(values)
            if name == "ikeguard_metrics_snapshot_ok" and answering < self.workers:
                value = 0.0  # a worker did not answer: the scrape is incomplete
            out[name].add_sample(sample, dict(labels), value)
        for (name, sample, labels), value in sorted(counters.items()):
            out[name].add_sample(sample, dict(labels), value)
        configured = GaugeMetricFamily("ikeguard_workers",
                                       "IKE worker processes configured ([gateway] workers)")
        configured.add_metric([], self.workers)
        live = GaugeMetricFamily("ikeguard_workers_answering",
                                 "IKE worker processes that answered this scrape (the others' SAs are "
                                 "not in the gauges)")
        live.add_metric([], answering)
        return [*out.values(), configured, live]


class WorkersCollector(Collector):
    """The supervisor's collector: asks every worker (``ask(index)`` -> the ``metrics`` answer, on the
    supervisor's loop), merges. ``own()``: the supervisor's own families as exposition text."""

    def __init__(self, workers: int, ask: Callable[[int], Awaitable[dict[str, Any]]],
                 loop: asyncio.AbstractEventLoop, own: Callable[[], str]) -> None:
        self.merger = WorkersMetrics(workers)
        self.ask = ask
        self.loop = loop
        self.own = own

    async def _gather(self) -> dict[int, tuple[int, str]]:
        answers = await asyncio.gather(*(self.ask(i) for i in range(self.merger.workers)))
        out: dict[int, tuple[int, str]] = {}
        for index, answer in enumerate(answers):
            result = answer.get("result") if answer.get("ok") else None
            if isinstance(result, dict) and isinstance(result.get("text"), str):
                out[index] = (int(result.get("pid", 0)), result["text"])
        return out

    def collect(self) -> Iterator[Metric]:
        """Called in the HTTP server's thread."""
        future = asyncio.run_coroutine_threadsafe(self._gather(), self.loop)
        try:
            answers = future.result(SCRAPE_TIMEOUT)
        except Exception:
            future.cancel()
            log.warning("metrics: the workers did not answer within %.0f s", SCRAPE_TIMEOUT)
            answers = {}
        try:
            own = self.own()
        except Exception:
            log.exception("metrics: the supervisor's own families failed")
            own = ""
        yield from self.merger.merge(answers, own)


def audit_families(audit: Any) -> str:
    """The supervisor's own families: its audit trail writer's queue, spool and health (the definitions of
    :func:`ikeguard.control.metrics.build_metrics`)."""
    pending = getattr(audit, "pending", None)
    healthy = getattr(audit, "healthy", None)
    snap = GatewaySnapshot(conns=[], ike_sas={}, child_sas={}, exchanges={}, failures={}, traffic={},
                           certs=[], audit_pending=pending if isinstance(pending, int) else None,
                           audit_spool=dict(audit.spool_depth()) if hasattr(audit, "spool_depth") else {},
                           audit_healthy=None if healthy is None else bool(healthy))
    return exposition(f for f in build_metrics(snap) if f.name.startswith("ikeguard_audit_"))


def start_workers_metrics(host: str, port: int, collector: WorkersCollector) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` only for the whole gateway; returns the stop function."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics for %d workers", host, port, collector.merger.workers)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
