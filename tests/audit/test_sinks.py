"""Delivery to a real rsyslogd over RFC 5425 mutual TLS, and to a JSON-lines file; loss and restarts."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikeguard.audit.chain import Record, chain_hash
from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.service import AuditService, SinkSpec
from ikeguard.audit.sinks import ecs
from ikeguard.audit.sinks.forwarder import ForwarderSettings
from ikeguard.audit.store import AuditStore

from .helpers import sample_event, verification_key
from .rsyslog import RSYSLOGD, Pki, Rsyslog, make_pki

# In CI nothing is skipped (make test installs rsyslog + rsyslog-gnutls): a missing rsyslogd fails there.
pytestmark = pytest.mark.skipif(
    not os.path.exists(RSYSLOGD) and os.environ.get("CI") != "true", reason="needs rsyslogd + rsyslog-gnutls"
)
FAST = ForwarderSettings(confirm_delay=0.3, backoff_min=0.05, backoff_max=0.3, idle_poll=0.05)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def rsyslog(tmp_path: Path, pki: Pki) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path / "rsyslog", pki)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _all_records(state: Path) -> dict[int, Record]:
    store = AuditStore(state, create=False)
    try:
        return {r.seq: r for r in store.records()}
    finally:
        store.close()


def _stringify(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def test_records_arrive_over_tls_with_all_fields(tmp_path: Path, rsyslog: Rsyslog) -> None:
    service = AuditService(
        tmp_path / "state", [SinkSpec("siem", "syslog-tls", rsyslog.target())], settings=FAST
    )
    service.start()
    try:
        for i in range(12):
            service.record(sample_event(i))
        service.record(
            AuditEvent(
                EventName.ADMIN_COMMAND,
                admin="alice",
                reason='terminate "x" [y] \\z',
                details={"command": "terminate --conn merchants"},
            )
        )
        assert service.flush()
        last = service.store.head()[0]
        rsyslog.wait_for_seq(last)
    finally:
        service.close()
    records = _all_records(tmp_path / "state")
    messages = rsyslog.messages()
    assert len(messages) >= last
    for msg in messages:
        sd = msg["sd"]
        assert isinstance(sd, dict)
        chain = sd["ikeguardChain@32473"]
        rec = records[int(chain["seq"])]
        assert chain["hash"] == rec.hash.hex() and chain["prev"] == rec.prev.hex()
        assert msg["msgid"] == rec.body["event"] and msg["time"] == rec.time and msg["app"] == "ikeguard"
        expected = {k: _stringify(v) for k, v in rec.body.items() if k != "details"}
        assert sd["ikeguard@32473"] == expected
        details = rec.body.get("details") or {}
        assert sd.get("ipsec@32473", {}) == {k: _stringify(v) for k, v in details.items()}  # type: ignore[union-attr]
        assert sd["meta"] == {"sequenceId": chain["seq"]}
    admin = next(m for m in messages if m["msgid"] == "admin.command")
    assert admin["pri"] == 13 * 8 + 5
    assert admin["sd"]["ikeguard@32473"]["reason"] == 'terminate "x" [y] \\z'  # type: ignore[index]


def test_rsyslog_restart_loses_nothing_and_keeps_order(tmp_path: Path, rsyslog: Rsyslog) -> None:
    service = AuditService(
        tmp_path / "state", [SinkSpec("siem", "syslog-tls", rsyslog.target())], settings=FAST
    )
    service.start()
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            service.record(sample_event(i))
            i += 1
            time.sleep(0.003)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.6)
        rsyslog.stop()  # the SIEM goes away during activity
        time.sleep(1.0)
        rsyslog.start()
        time.sleep(0.6)
        stop.set()
        producer.join()
        assert service.flush()
        last = service.store.head()[0]
        seqs = rsyslog.wait_for_seq(last, timeout=20)
        events = [r.body["event"] for r in service.store.records()]
    finally:
        stop.set()
        service.close()
    unique = list(dict.fromkeys(seqs))  # de-duplicate by seq, keep first arrival
    assert unique == list(range(1, len(unique) + 1)) and unique[-1] >= last
    assert "audit.sink.down" in events and "audit.sink.up" in events


def test_gateway_killed_mid_spool_loses_nothing(tmp_path: Path, pki: Pki) -> None:
    server = Rsyslog(tmp_path / "rsyslog", pki)  # not started: everything spools
    state = tmp_path / "state"
    cmd = [
        sys.executable,
        "-m",
        "tests.audit.producer",
        str(state),
        str(server.port),
        str(pki.ca.parent),
        "400",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    acked = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ack"):
                acked = int(line.split()[1])
            if acked >= 150:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-spool, mid-burst
        proc.wait(5)
        store = AuditStore(state, create=False)
        assert store.head()[0] >= acked  # every acknowledged record survived
        assert store.verify(verification_key(state)).ok
        store.close()
        server.start()
        proc = subprocess.Popen([*cmd[:-1], "5"], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("done"):
                break
        store = AuditStore(state, create=False)
        last = store.head()[0]
        store.close()
        seqs = server.wait_for_seq(last, timeout=20)
        assert set(range(1, last + 1)) <= set(seqs)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        server.stop()


def test_json_lines_file_sink_parses_back_and_rehashes(tmp_path: Path) -> None:
    out = tmp_path / "siem.jsonl"
    service = AuditService(tmp_path / "state", [SinkSpec("file", "json", path=out)], settings=FAST)
    service.start()
    try:
        for i in range(9):
            service.record(sample_event(i), now=dt.datetime(2026, 11, 27, 2, 0, i, tzinfo=dt.UTC))
        assert service.flush()
        last = service.store.head()[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < last):
            time.sleep(0.05)
    finally:
        service.close()
    records = _all_records(tmp_path / "state")
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["event"]["sequence"] for d in docs][:last] == list(range(1, last + 1))
    for doc in docs:
        seq, time_, body = ecs.from_ecs(doc)
        rec = records[seq]
        assert body == rec.body and time_ == rec.time
        assert chain_hash(bytes.fromhex(doc["ikeguard"]["audit"]["prev"]), seq, time_, body) == rec.hash
    ike_up = next(d for d in docs if d["event"]["action"] == "ike.up")
    assert ike_up["ipsec"]["remote_id"].endswith(".merchants.example")
    assert ike_up["source"]["address"] == "198.51.100.7"


def test_unreachable_siem_never_blocks_the_producer(tmp_path: Path, pki: Pki) -> None:
    server = Rsyslog(tmp_path / "rsyslog", pki)  # never started
    service = AuditService(
        tmp_path / "state", [SinkSpec("siem", "syslog-tls", server.target())], settings=FAST
    )
    service.start()
    try:
        started = time.perf_counter()
        for i in range(2000):
            service.record(sample_event(i))
        elapsed = time.perf_counter() - started
        assert service.flush(20)
        assert elapsed < 0.5, elapsed
        assert service.forwarders[0].connected is False
        assert service.store.cursor("siem") == 0
    finally:
        service.close()


def test_spool_alarm_as_the_bound_nears(tmp_path: Path, pki: Pki) -> None:
    server = Rsyslog(tmp_path / "rsyslog", pki)  # never started: everything spools
    settings = ForwarderSettings(
        confirm_delay=0.3, backoff_min=0.05, backoff_max=0.1, idle_poll=0.02, spool_limit=50
    )
    service = AuditService(
        tmp_path / "state", [SinkSpec("siem", "syslog-tls", server.target())], settings=settings
    )
    service.start()
    try:
        for i in range(60):
            service.record(sample_event(i))
        assert service.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and service.spool_depth()["siem"] < 60:
            time.sleep(0.05)
        assert service.spool_depth()["siem"] >= 60
        assert service.flush()
        alarms = [r.body for r in service.store.records() if r.body["event"] == "audit.spool.high"]
    finally:
        service.close()
    assert len(alarms) == 1 and alarms[0]["details"]["limit"] == 50  # type: ignore[index]
