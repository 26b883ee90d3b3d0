"""Issue 8 end to end: `ikeguard run` against strongSwan, its audit trail forwarded to a real rsyslogd over
RFC 5425 with mutual TLS (gtls, x509/certvalid) inside the gateway's namespace.

* A tunnel set up, rekeyed (Child and IKE SA) and torn down by an operator command yields the expected records
  in rsyslog's file; parsed back (RFC 5424 structured data) each one equals the store's record and
  `ikeguard audit tail --json` field by field (seq, event, connection, addresses, ids, proposal, details,
  chain head); no PSK or ESP key appears in rsyslog's file or the store; `ikeguard sas` yields `admin.command`
  with the local user.
* rsyslog stopped while the gateway is busy and restarted, then the gateway SIGKILLed while records are
  spooled and restarted: every record of the store arrives, in order, exactly once after de-duplication by
  seq; the spool depth metric shows the backlog while rsyslog is down.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.audit.sinks.syslog import SD_CHAIN, SD_DETAILS, SD_EVENT
from ikeguard.tools.netns import Topology, wait_until
from tests.audit.gateway_lab import (
    PSK,
    GatewayFactory,
    NsRsyslog,
    PeerFactory,
    audit_tail_json,
    gateway_config,
    gateway_files,
    last_seq,
    logged_keys,
    metric,
    store_records,
    strongswan_client,
)
from tests.audit.rsyslog import Pki, make_pki
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL

LIFECYCLE = ["auth.success", "ike.up", "child.up", "child.rekeyed", "ike.rekeyed", "child.down", "ike.down"]


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "siem-pki")


def _lab(topo: Topology, pki: Pki, tmp_path: Path, ikeguard_gateway: GatewayFactory,
         strongswan_peer: PeerFactory, log_level: int = 2) -> tuple[NsRsyslog, Any, Any]:
    rsyslog = NsRsyslog(topo.right.namespace, tmp_path / "rsyslog", pki)
    rsyslog.start()
    gw = ikeguard_gateway(topo.right.namespace, "gw", gateway_config(topo, pki), gateway_files())
    client = strongswan_client(strongswan_peer, topo, log_level=log_level)
    return rsyslog, gw, client


def _subsequence(names: list[str], wanted: list[str]) -> bool:
    it = iter(names)
    return all(any(n == w for n in it) for w in wanted)


def _events(gw: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events() if e["event"] == name]


@pytest.mark.root
@pytest.mark.interop
def test_tunnel_lifecycle_records_in_rsyslog_equal_the_store(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    pki: Pki, tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    rsyslog, gw, client = _lab(topo, pki, tmp_path, ikeguard_gateway, strongswan_peer, log_level=4)
    try:
        client.initiate(child="net", ike="ikg")
        ss = client.wait_established("ikg", "net")
        first_child = ss.child("net")

        assert client.rekey(child="net") == 1
        assert wait_until(lambda: _events(gw, "child.rekeyed"), 10), gw.log_tail(40)
        rekeyed_child = client.wait_for(
            lambda sas: any(c.name == "net" and c.state == "INSTALLED" and c.spi_out != first_child.spi_out
                            for sa in sas for c in sa.children), 10, "Child SA rekeyed")[0].child("net")
        assert client.rekey(ike="ikg") == 1
        assert wait_until(lambda: _events(gw, "ike.rekeyed"), 10), gw.log_tail(40)

        assert gw.cli("sas")  # an operator query: admin.command with the local user
        gw.cli("terminate", "--conn", "ikg", json=False)
        assert wait_until(lambda: client.list_sas() == [], 10), client.log()[-2000:]
        assert wait_until(lambda: _events(gw, "ike.down"), 10), gw.log_tail(40)

        keys = logged_keys(client.log())
        # SK_d/ei/er/pi/pr of 2 IKE SAs, both ESP keys of 2 Child SAs
        assert sum(k.startswith("Sk_") for k in keys) >= 10, sorted(keys)
        assert sum(" key#" in k for k in keys) >= 4, sorted(keys)
        head = last_seq(gw.state_dir)
        rsyslog.wait_for_seq(head, timeout=20)
        tail = {r["seq"]: r for r in audit_tail_json(gw, head + 10)}  # records audit.accessed itself
        stored = store_records(gw.state_dir)
    finally:
        rsyslog.stop()

    received, order = rsyslog.by_seq()
    # every stored record up to `head` arrived, in order, once after de-duplication
    assert [s for s in order if s <= head] == list(range(1, head + 1))

    # field by field: rsyslog's structured data == the store == `audit tail --json`
    for seq in range(1, head + 1):
        record, message, shown = stored[seq], received[seq], tail[seq]
        body = dict(record.body)
        details = body.pop("details", {}) or {}
        assert message["msgid"] == body["event"]
        assert message["time"] == record.time
        assert message["app"] == "ikeguard"
        assert message["sd"][SD_EVENT] == {k: _text(v) for k, v in body.items()}, seq
        assert message["sd"].get(SD_DETAILS, {}) == {k: _text(v) for k, v in details.items()}, seq
        chain = {"seq": str(seq), "prev": record.prev.hex(), "hash": record.hash.hex()}
        assert message["sd"][SD_CHAIN] == chain
        assert message["sd"]["meta"] == {"sequenceId": str(seq)}
        assert shown == record.to_json()

    # the tunnel's life in order, with its context
    names = [stored[s].body["event"] for s in range(1, head + 1)]
    assert _subsequence(names, LIFECYCLE), names
    bodies = [stored[s].body for s in range(1, head + 1)]
    ike_up = next(b for b in bodies if b["event"] == "ike.up")
    assert ike_up["connection"] == "ikg" and ike_up["outcome"] == "success"
    host = lambda endpoint: str(endpoint).rpartition(":")[0]  # noqa: E731 - "address:port"
    assert (host(ike_up["local_addr"]), host(ike_up["remote_addr"])) == (str(topo.right.address),
                                                                        str(topo.left.address))
    assert (ike_up["local_id"], ike_up["remote_id"]) == (GW_FQDN, CLIENT_FQDN)
    assert ike_up["proposal"] == IKE_PROPOSAL == ss.proposal
    auth = next(b for b in bodies if b["event"] == "auth.success")
    assert auth["remote_id"] == CLIENT_FQDN and host(auth["remote_addr"]) == str(topo.left.address)
    child_up = next(b for b in bodies if b["event"] == "child.up")
    assert child_up["connection"] == "ikg" and child_up["ike_uniqueid"] == ike_up["ike_uniqueid"]
    assert child_up["proposal"] == first_child.proposal  # the first Child SA has no KE of its own
    assert child_up["details"] == {"child": "net", "local_ts": str(topo.right.subnet),  # type: ignore[comparison-overlap]
                                   "remote_ts": str(topo.left.subnet)}
    rekeyed = next(b for b in bodies if b["event"] == "child.rekeyed")
    assert rekeyed["proposal"] == ESP_PROPOSAL == rekeyed_child.proposal  # PFS group in the rekey
    assert rekeyed["details"]["old_spi_in"] == f"{first_child.spi_out:08x}"  # type: ignore[index]
    assert rekeyed["details"]["new_spi_in"] == f"{rekeyed_child.spi_out:08x}"  # type: ignore[index]
    ike_rekeyed = next(b for b in bodies if b["event"] == "ike.rekeyed")
    assert ike_rekeyed["details"]["old_uniqueid"] == str(ike_up["ike_uniqueid"])  # type: ignore[index]
    assert ike_rekeyed["proposal"] == IKE_PROPOSAL
    for name in ("child.rekeyed", "ike.rekeyed", "child.down", "ike.down"):
        event = next(b for b in bodies if b["event"] == name)
        assert event["connection"] == "ikg" and event["remote_id"] == CLIENT_FQDN, event
    down = next(b for b in bodies if b["event"] == "ike.down")
    assert down["reason"]

    # the operator's commands, with the local user from the socket's peer credentials
    user = pwd.getpwuid(os.geteuid()).pw_name
    commands = [b for b in bodies if b["event"] == "admin.command"]
    assert any(str(c["details"]["command"]).startswith("sas") and c["admin"] == user  # type: ignore[index]
               for c in commands), commands
    assert any(str(c["details"]["command"]).startswith("terminate") and c["admin"] == user  # type: ignore[index]
               for c in commands), commands
    assert received[next(s for s in range(1, head + 1)
                         if stored[s].body["event"] == "admin.command")]["sd"][SD_EVENT]["admin"] == user

    # no secret anywhere: the PSK (and its hex form) and every ESP key strongSwan installed
    siem = rsyslog.output.read_bytes().lower()
    trail = b"".join(p.read_bytes() for p in gw.state_dir.glob("audit.db*")).lower()
    for secret in {PSK.encode(), PSK.encode().hex().encode(), *(k.encode() for k in keys.values())}:
        assert secret.lower() not in siem and secret.lower() not in trail


def _busy(gw: Any, n: int) -> None:
    """Gateway activity: control-socket queries, each one an `admin.command` record."""
    for _ in range(n):
        gw.request("sas")


def _spool(topo: Topology) -> float:
    """The gateway's ``ikeguard_audit_spool_depth`` summed over its sinks."""
    return sum(metric(topo.right.namespace, "ikeguard_audit_spool_depth").values())


def _audit_children(pid: int) -> list[int]:
    """The gateway's child processes (its audit process), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


@pytest.mark.root
@pytest.mark.interop
@pytest.mark.slow
def test_rsyslog_outage_and_gateway_sigkill_lose_nothing(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    pki: Pki, tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    rsyslog, gw, client = _lab(topo, pki, tmp_path, ikeguard_gateway, strongswan_peer)
    config = gw.config
    try:
        client.initiate(child="net", ike="ikg")
        client.wait_established("ikg", "net")
        _busy(gw, 20)
        rsyslog.wait_for_seq(last_seq(gw.state_dir), timeout=15)

        # 1. rsyslog stopped while the gateway is busy (rekeys, queries, a tunnel torn down and set up again)
        rsyslog.stop()
        assert client.rekey(child="net") == 1
        _busy(gw, 30)
        client.terminate(ike="ikg")
        client.initiate(child="net", ike="ikg")
        client.wait_established("ikg", "net")
        _busy(gw, 30)
        assert wait_until(lambda: _spool(topo) > 50, 10), "spool depth metric did not show the backlog"
        rsyslog.start()
        _busy(gw, 20)
        rsyslog.wait_for_seq(last_seq(gw.state_dir), timeout=40)
        outage = {"audit.sink.down", "audit.sink.up"}
        assert wait_until(lambda: outage <= {e["event"] for e in gw.audit_events()}, 10), "no sink.down/up"

        # 2. rsyslog down again; records spooled; the gateway SIGKILLed with the spool full, then restarted
        rsyslog.stop()
        _busy(gw, 40)
        client.terminate(ike="ikg")
        assert wait_until(lambda: len(_events(gw, "ike.down")) >= 2, 10), gw.log_tail(40)
        gw.request("sas")
        spooled_to = last_seq(gw.state_dir)
        assert wait_until(lambda: _spool(topo) > 0, 10)
        children = _audit_children(gw.pid)
        gw.kill()
        for pid in children:  # the orphaned audit process notices and exits; wait for it
            assert wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 15), f"audit process {pid}"
        assert last_seq(gw.state_dir) >= spooled_to  # everything acknowledged before the kill is on disk
        rsyslog.start()
        gw2 = ikeguard_gateway(topo.right.namespace, "gw", config, gateway_files())
        client.initiate(child="net", ike="ikg")
        client.wait_established("ikg", "net")
        _busy(gw2, 5)
        assert wait_until(lambda: len(_events(gw2, "ike.up")) == 3, 10), gw2.log_tail(40)
        head = last_seq(gw2.state_dir)
        rsyslog.wait_for_seq(head, timeout=40)
    finally:
        rsyslog.stop()

    stored = store_records(gw.state_dir)
    received, order = rsyslog.by_seq()
    assert [s for s in order if s <= head] == list(range(1, head + 1))  # in order, each once after de-dup
    for seq in range(1, head + 1):
        assert received[seq]["sd"][SD_CHAIN]["hash"] == stored[seq].hash.hex()
    # At-least-once delivery: a record re-sent after the outage or the kill arrives again, byte for byte the
    # stored record (same seq, same chain hash), never as a different record under a known seq.
    for message in rsyslog.messages():
        chain = message["sd"][SD_CHAIN]
        assert chain["hash"] == stored[int(chain["seq"])].hash.hex()
    names = [stored[s].body["event"] for s in range(1, head + 1)]
    assert names.count("service.started") == 2 and "child.rekeyed" in names, names
    assert names.count("ike.up") == 3, [n for n in names if n != "admin.command"]
