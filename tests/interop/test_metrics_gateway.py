"""Metrics scraped from a running gateway (userspace ESP, certificates) agree with `sas` while a strongSwan
peer sends traffic through it, and the traffic counters survive a Child SA rekey."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
METRICS = "127.0.0.1:9469"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(topo: Topology) -> Samples:
    body = topo.right.namespace.run("curl", "-sf", f"http://{METRICS}/metrics").stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _get(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def _ping(topo: Topology, count: int) -> None:
    left, right = topo.left, topo.right
    result = left.namespace.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I",
                                str(left.subnet_address), str(right.subnet_address), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _totals(sas: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    kids = [c for sa in sas for c in sa["children"]]
    return (sum(c["bytes_in"] for c in kids), sum(c["bytes_out"] for c in kids),
            sum(c["packets_in"] for c in kids), sum(c["packets_out"] for c in kids))


def test_metrics_agree_with_sas_and_survive_rekey(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    test_pki: TestPki,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    client = strongswan_peer(left.namespace, "client", connections=[ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        proposals=[IKE_PROPOSAL],
        local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])],
        certs={"client": test_pki.client}, cacerts={"ca": test_pki.ca.cert})
    config = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet), str(left.subnet),
                      certs=("pki/gw.pem", "pki/gw.key", "pki/ca.pem"), dataplane="userspace",
                      extra_gateway=f'metrics = "{METRICS}"')
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), {
        "pki/ca.pem": test_pki.ca.issued.cert_pem(), "pki/gw.pem": test_pki.gw.cert_pem(),
        "pki/gw.key": test_pki.gw.key_pem()})
    group = {"connection": "ikg", "peer_group": CLIENT_FQDN}

    idle = _scrape(topo)
    assert _get(idle, "ikeguard_connection_configured", **group) == 1
    assert _get(idle, "ikeguard_connection_up", **group) == 0

    client.initiate(child="net", ike="ikg")
    gw.wait_sas(lambda sas: bool(sas) and bool(sas[0]["children"]), what="tunnel up")
    _ping(topo, 5)
    sas = gw.sas()
    samples = _scrape(topo)
    assert _get(samples, "ikeguard_connection_up", **group) == 1
    assert _get(samples, "ikeguard_ike_sas", state="established", **group) == len(sas) == 1
    assert _get(samples, "ikeguard_child_sas", state="installed", **group) == len(sas[0]["children"]) == 1
    bytes_in, bytes_out, packets_in, packets_out = _totals(sas)
    assert packets_in >= 5 and packets_out >= 5
    assert _get(samples, "ikeguard_bytes_in_total", **group) == bytes_in
    assert _get(samples, "ikeguard_bytes_out_total", **group) == bytes_out
    assert _get(samples, "ikeguard_packets_in_total", **group) == packets_in
    assert _get(samples, "ikeguard_packets_out_total", **group) == packets_out
    assert _get(samples, "ikeguard_ike_exchanges_total", connection="ikg", exchange="IKE_AUTH",
                outcome="success") == 1
    # certificate expiry: our certificate and the trust anchor, in seconds from now
    now = dt.datetime.now(dt.UTC)
    local = _get(samples, "ikeguard_certificate_expiry_seconds", kind="local", name="ikg",
                 subject=test_pki.gw.cert.subject.rfc4514_string())
    assert abs(local - (test_pki.gw.cert.not_valid_after_utc - now).total_seconds()) < 120
    anchor = _get(samples, "ikeguard_certificate_expiry_seconds", kind="authority", name="pki/ca.pem",
                  subject=test_pki.ca.cert.subject.rfc4514_string())
    assert anchor > local
    assert _get(samples, "ikeguard_audit_store_healthy") == 1

    # rekey the Child SA: the new SA starts from zero, the counters do not go back
    old_spi = sas[0]["children"][0]["spi_in"]
    gw.cli("rekey", "--conn", "ikg", "--child", "net")
    gw.wait_sas(lambda s: bool(s) and len(s[0]["children"]) == 1 and s[0]["children"][0]["spi_in"] != old_spi
                and s[0]["children"][0]["state"] == "installed", what="child rekeyed")
    after_rekey = _scrape(topo)
    assert _get(after_rekey, "ikeguard_packets_in_total", **group) == packets_in
    assert _get(after_rekey, "ikeguard_bytes_in_total", **group) == bytes_in
    _ping(topo, 2)
    sas2 = gw.sas()
    later = _scrape(topo)
    assert _get(later, "ikeguard_packets_in_total", **group) == packets_in + _totals(sas2)[2]
    assert _get(later, "ikeguard_packets_in_total", **group) >= packets_in + 2
    assert _get(later, "ikeguard_ike_exchanges_total", connection="ikg", exchange="CREATE_CHILD_SA",
                outcome="success") >= 1
