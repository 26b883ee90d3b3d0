"""The merge of the workers' expositions (control/metrics_workers.py) on expositions built by the real
``build_metrics``, and the two control-socket additions it and the multi-worker vici server use: the
unaudited ``metrics`` command and ``reload`` with ``file`` (restricted). The gateway-level proof with
strongSwan peers is tests/interop/test_workers_metrics_vici.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.control.client import ControlError
from ikeguard.control.metrics import CertExpiry, GatewaySnapshot, build_metrics, exposition
from ikeguard.control.metrics_workers import MERGE, WorkersMetrics
from tests.control.recording import RecordingGateway
from tests.control.test_server_protocol import run_with_server

NOW = dt.datetime.now(dt.UTC)  # the seconds-left gauges are relative to the snapshot time
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _snap(sas: int, bytes_in: int, expiry_days: int = 30) -> GatewaySnapshot:
    return GatewaySnapshot(
        conns=[{"name": "ikg", "remote_id": "peer", "ike_sas_up": sas, "peers": 0, "status": "up"}],
        ike_sas={("ikg", "established"): sas} if sas else {}, child_sas={},
        exchanges={("ikg", "IKE_AUTH", "success"): sas}, failures={}, traffic={"ikg": (bytes_in, 0, 0, 0)},
        certs=[CertExpiry("peer", "ikg", "CN=peer", NOW + dt.timedelta(days=expiry_days))],
        audit_pending=0, audit_spool={}, audit_healthy=True, now=NOW)


def _text(snap: GatewaySnapshot) -> str:
    return exposition(build_metrics(snap))


def _samples(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _get(samples: Samples, name: str, /, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


GROUP = {"connection": "ikg", "peer_group": "peer"}
AUTH = {"connection": "ikg", "exchange": "IKE_AUTH", "outcome": "success"}


def test_one_worker_merged_is_the_one_process_exposition() -> None:
    text = _text(_snap(3, 100))
    merged = _samples(exposition(WorkersMetrics(1).merge({0: (10, text)})))
    alone = _samples(text)
    assert {k: v for k, v in merged.items() if not k[0].startswith("ikeguard_workers")} == alone


def test_sums_max_min_and_a_restarted_or_missing_worker() -> None:
    merger = WorkersMetrics(2)
    first = _samples(exposition(merger.merge({0: (10, _text(_snap(1, 100, 30))),
                                              1: (11, _text(_snap(2, 50, 10)))})))
    assert _get(first, "ikeguard_ike_sas", **GROUP, state="established") == 3
    assert _get(first, "ikeguard_bytes_in_total", **GROUP) == 150
    assert _get(first, "ikeguard_ike_exchanges_total", **AUTH) == 3
    assert _get(first, "ikeguard_connection_up", **GROUP) == 1 and _get(
        first, "ikeguard_connection_configured", **GROUP) == 1
    expiry = _get(first, "ikeguard_certificate_expiry_seconds", kind="peer", name="ikg", subject="CN=peer")
    assert expiry == 10 * 86400  # the soonest
    # worker 1 restarted (new pid, nothing counted yet): its SAs are gone, its counts stay
    second = _samples(exposition(merger.merge({0: (10, _text(_snap(1, 120))), 1: (12, _text(_snap(0, 0)))})))
    assert _get(second, "ikeguard_ike_sas", **GROUP, state="established") == 1
    assert _get(second, "ikeguard_bytes_in_total", **GROUP) == 170
    assert _get(second, "ikeguard_ike_exchanges_total", **AUTH) == 3
    # worker 1 not answering: no gauges of it, counters as last seen, the scrape flagged incomplete
    third = _samples(exposition(merger.merge({0: (10, _text(_snap(1, 130)))})))
    assert _get(third, "ikeguard_bytes_in_total", **GROUP) == 180
    assert _get(third, "ikeguard_workers_answering") == 1 and _get(third, "ikeguard_metrics_snapshot_ok") == 0


def test_every_gauge_family_has_a_merge_rule() -> None:
    snap = _snap(1, 1)
    snap.acme = {"failures": 0}
    snap.scep = {"failures": 0}
    families = list(build_metrics(snap))
    gauges = {f.name for f in families if f.type == "gauge"}
    assert gauges - set(MERGE) == set(), "add the new gauge to MERGE in control/metrics_workers.py"


def test_metrics_command_answers_without_an_audit_record(tmp_path: Path) -> None:
    gw = RecordingGateway([])
    gw.conns = lambda: []  # type: ignore[method-assign]
    gw.stats = SimpleNamespace(exchanges={}, failures={}, ocsp_stapled={}, traffic_totals=lambda live: live)
    result: dict[str, Any] = run_with_server(gw, tmp_path / "control.sock", lambda c: c.request("metrics"))
    assert "ikeguard_metrics_snapshot_ok 1.0" in result["text"] and isinstance(result["pid"], int)
    assert gw.audit.events == []


def test_reload_file_is_the_configuration_or_the_vici_loaded_file_only(tmp_path: Path) -> None:
    gw = RecordingGateway([])
    config = tmp_path / "gateway.toml"
    gw.plan = SimpleNamespace(config=SimpleNamespace(
        path=str(config), resolve=lambda rel: tmp_path / rel, model=SimpleNamespace(
            gateway=SimpleNamespace(state_dir="state"))))
    with pytest.raises(ControlError, match="reload: file must be"):
        run_with_server(gw, tmp_path / "control.sock", lambda c: c.request("reload", file="/etc/passwd"))
