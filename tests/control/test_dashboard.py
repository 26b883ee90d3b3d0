"""packaging/grafana/ikeguard.json and packaging/prometheus/ikeguard-alerts.yml: every metric a panel or an
alert queries is exposed by a real `/metrics` scrape (start_metrics over a gateway with the audit service's
attributes), the dashboard has Grafana's dashboard model shape (uid, title, schemaVersion, unique panel ids,
grid positions, a Prometheus target with refId per query, the templating variables the queries use), and the
rule file has Prometheus' rule-group shape (checked by hand: no YAML parser in the test extras)."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.control.metrics import start_metrics
from tests.control.test_metrics import MetricsGateway, gateway  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging" / "grafana" / "ikeguard.json"
ALERTS = ROOT / "packaging" / "prometheus" / "ikeguard-alerts.yml"
METRIC = re.compile(r"\bikeguard_[a-z_]+\b")


class _Audit:
    """The attributes IsolatedAuditService exposes to the metrics snapshot."""

    pending = 3
    healthy = True

    def spool_depth(self) -> dict[str, int]:
        return {"siem": 0}

    def record(self, event: object) -> None:
        pass


@pytest.fixture
def exposed(gateway: MetricsGateway) -> set[str]:  # noqa: F811
    """Sample names of one real scrape of /metrics."""
    gateway.audit = _Audit()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    stop = start_metrics(gateway, "127.0.0.1", port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        stop()
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        if family.type == "counter":  # its samples are <name>_total, also while it has none yet
            names.add(f"{family.name}_total")
        names.update(sample.name for sample in family.samples)
    return names


def _dashboard_queries() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in data["panels"] for t in p["targets"]] + [
        v["definition"] for v in data["templating"]["list"] if "definition" in v]


def _alert_queries() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s+expr: (.+)$", ALERTS.read_text(), re.MULTILINE)]


def test_every_metric_queried_exists_in_metrics(exposed: set[str]) -> None:
    queried = {name for expr in _dashboard_queries() + _alert_queries() for name in METRIC.findall(expr)}
    assert queried, "no ikeguard metric found in the queries"
    missing = sorted(queried - exposed)
    assert not missing, f"queried but not exposed by /metrics: {missing}"
    # the panels: tunnels up per connection, setups and failures by reason, rekeys, certificate
    # expiry, audit queue
    for wanted in ("ikeguard_connection_up", "ikeguard_ike_exchanges_total", "ikeguard_ike_failures_total",
                   "ikeguard_certificate_expiry_seconds", "ikeguard_audit_queue_depth"):
        assert wanted in queried


def test_dashboard_has_grafanas_dashboard_shape() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "ikeguard" and data["title"] and isinstance(data["schemaVersion"], int)
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in data["templating"]["list"]}
    for p in data["panels"]:
        assert p["type"] in ("stat", "timeseries", "table")
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert p["datasource"]["type"] == "prometheus"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in p["targets"]:
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var.startswith("__"), var
    titles = {p["title"] for p in data["panels"]}
    assert {"Tunnels up per connection", "Failures by reason", "Rekeys per hour",
            "Certificate expiry (days)", "Audit queue and SIEM spool"} <= titles


def test_alert_rules_have_prometheus_rule_shape() -> None:
    text = ALERTS.read_text()
    assert text.startswith("#") and "\ngroups:\n  - name: ikeguard\n    rules:\n" in text
    rules = re.split(r"\n      - alert: ", text)[1:]
    names = [r.split("\n", 1)[0] for r in rules]
    assert {"IkeguardTunnelDown", "IkeguardCertificateExpiring", "IkeguardAuditBacklog",
            "IkeguardProfileViolation"} <= set(names)
    for rule in rules:
        assert re.search(r"\n        expr: \S", rule)
        assert re.search(r"\n        for: \d+[smh]\n", rule)
        assert re.search(r"\n        labels:\n          severity: (warning|critical)\n", rule)
        assert "\n        annotations:\n          summary: " in rule
