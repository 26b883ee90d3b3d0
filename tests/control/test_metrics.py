"""Prometheus metrics read from the gateway at scrape time: families, labels (connection and peer group, never
an SA), certificate expiry, audit health; served over HTTP on the configured address only."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.control.metrics import GatewayCollector, start_metrics
from ikeguard.service.plan import build_plan
from ikeguard.service.stats import GatewayStats
from tests.control.recording import RecordingGateway
from tests.policy.test_certificates import issue_example_pki


def _sa(uid: int, name: str, peer: str, bytes_in: int) -> dict[str, Any]:
    child = {"name": "card-data", "uniqueid": uid * 10, "state": "installed", "bytes_in": bytes_in,
             "bytes_out": 2 * bytes_in, "packets_in": 1, "packets_out": 2}
    return {"uniqueid": uid, "name": name, "remote_id": peer, "state": "established", "children": [child]}


class MetricsGateway(RecordingGateway):
    """RecordingGateway with the GatewayStats counters and conns() of a template connection."""

    def __init__(self, sas: list[dict[str, Any]]) -> None:
        super().__init__(sas)
        self.stats = GatewayStats()

    staple: dict[str, Any] | None = None

    def conns(self) -> list[dict[str, Any]]:
        up = len(self._sas)
        return [{"name": "merchants", "remote_id": "*.merchants.processor.example", "template": True,
                 "peers": 2, "ike_sas_up": up, "status": "up" if up else "down", "ocsp_staple": self.staple}]


@pytest.fixture
def gateway(tmp_path: Path, examples_dir: Path) -> MetricsGateway:
    target = tmp_path / "examples"
    shutil.copytree(examples_dir, target)
    issue_example_pki(target, now=dt.datetime.now(dt.UTC))  # build_plan below reads the wall clock
    gw = MetricsGateway([_sa(1, "merchants", "merchant-a.merchants.processor.example", 1000),
                         _sa(2, "merchants", "merchant-b.merchants.processor.example", 500)])
    gw.plan = build_plan(target / "processor-gateway.toml", now=dt.datetime.now(dt.UTC))
    gw.stats.count_audit(AuditEvent(EventName.IKE_UP, connection="merchants"))
    gw.stats.count_audit(AuditEvent(EventName.AUTH_FAILURE, Outcome.FAILURE, connection="merchants"))
    gw.stats.add_traffic("merchants", inbound=True, octets=7000, packets=7)  # an SA deleted earlier
    return gw


def _samples(collector: GatewayCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in collector.collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_collector_reads_the_gateway(gateway: MetricsGateway) -> None:
    samples = _samples(GatewayCollector(gateway))
    group = {"connection": "merchants", "peer_group": "*.merchants.processor.example"}
    assert _value(samples, "ikeguard_connection_configured", **group) == 1
    assert _value(samples, "ikeguard_connection_up", **group) == 1
    assert _value(samples, "ikeguard_connection_peers", **group) == 2
    assert _value(samples, "ikeguard_ike_sas", state="established", **group) == 2
    assert _value(samples, "ikeguard_child_sas", state="installed", **group) == 2
    # live SA counters plus the final counters of SAs already gone (counters survive rekeys and deletes)
    assert _value(samples, "ikeguard_bytes_in_total", **group) == 1000 + 500 + 7000
    assert _value(samples, "ikeguard_bytes_out_total", **group) == 3000
    assert _value(samples, "ikeguard_packets_in_total", **group) == 2 + 7
    assert _value(samples, "ikeguard_ike_exchanges_total", connection="merchants", exchange="IKE_AUTH",
                  outcome="success") == 1
    assert _value(samples, "ikeguard_ike_failures_total", connection="merchants", reason="auth_failed") == 1
    # no label names an SA or a single peer
    label_names = {name for (_metric, labels) in samples for name, _v in labels}
    assert not label_names & {"uniqueid", "spi", "remote_id", "peer", "remote_addr"}


def test_certificate_expiry_of_local_cert_and_authority(gateway: MetricsGateway) -> None:
    samples = _samples(GatewayCollector(gateway))
    expiry = {labels: v for (name, labels), v in samples.items()
              if name == "ikeguard_certificate_expiry_seconds"}
    by_kind = {dict(labels)["kind"] + ":" + dict(labels)["name"]: v for labels, v in expiry.items()}
    gw_cert = gateway.plan.connections["merchants"].local.certs[0]
    expected = (gw_cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()
    assert abs(by_kind["local:merchants"] - expected) < 60
    assert by_kind["authority:processor-vpn"] > 365 * 86400  # the example CA lives ten years


def test_a_disconnected_connection_is_down(gateway: MetricsGateway) -> None:
    gateway._sas = []
    samples = _samples(GatewayCollector(gateway))
    group = {"connection": "merchants", "peer_group": "*.merchants.processor.example"}
    assert _value(samples, "ikeguard_connection_up", **group) == 0
    assert _value(samples, "ikeguard_bytes_in_total", **group) == 7000  # still counted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_endpoint_serves_the_collector_on_the_given_address_only(gateway: MetricsGateway) -> None:
    port = _free_port()
    stop = start_metrics(gateway, "127.0.0.1", port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert "ikeguard_connection_up" in families and "ikeguard_bytes_in" in families
        assert _listeners(port) == ["127.0.0.1"]
    finally:
        stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def _listeners(port: int) -> list[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = []
    for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(path).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                if width == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    found.append("v6:" + addr)
    return found


def test_stapled_ocsp_responses_are_counted(gateway: MetricsGateway) -> None:
    """RFC 4806: ``ocsp_received``/``ocsp_sent`` of the auth records become ikeguard_ocsp_stapled_total."""
    for details in ({"ocsp_received": "good", "ocsp_sent": "good"}, {"ocsp_received": "good"},
                    {"ocsp_sent": "none cached"}):
        gateway.stats.count_audit(AuditEvent(EventName.AUTH_SUCCESS, connection="merchants", details=details))
    gateway.stats.count_audit(AuditEvent(EventName.AUTH_FAILURE, Outcome.FAILURE, connection="merchants",
                                         details={"ocsp_received": "revoked"}))
    gateway.stats.count_audit(AuditEvent(EventName.CERT_VALIDATED, connection="merchants",
                                         details={"ocsp_received": "good"}))  # not counted twice
    samples = _samples(GatewayCollector(gateway))

    def stapled(direction: str, status: str) -> float:
        return _value(samples, "ikeguard_ocsp_stapled_total", connection="merchants", direction=direction,
                      status=status)

    assert stapled("received", "good") == 2 and stapled("received", "revoked") == 1
    assert stapled("sent", "good") == 1 and stapled("sent", "none cached") == 1
    assert not [k for k in samples if k[0] == "ikeguard_ocsp_staple_valid_seconds"]  # none cached yet
    gateway.staple = {"status": "good", "next_update": dt.datetime.now(dt.UTC).timestamp() + 600}
    left = _value(_samples(GatewayCollector(gateway)), "ikeguard_ocsp_staple_valid_seconds",
                  connection="merchants", status="good")
    assert 590 < left <= 600
