"""The operator's verbs against a running `ikeguard run` and a real strongSwan peer (issue 9 "Done when"):
every verb in text and JSON; terminate sends DELETE (strongSwan's SA is gone); initiate brings it back;
rekey gives new SPIs on both sides; every command is in the audit trail with the operator."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "control-test-psk-5e8b1c2d9a7f3046"
PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def _pair(netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
          ikeguard_gateway: GatewayFactory) -> tuple[Topology, GatewayProcess, StrongSwanPeer]:
    """ikeguard on the right (may initiate to the left), strongSwan on the left (may initiate too)."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    client = strongswan_peer(left.namespace, "client", connections=[ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])],
        psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
    config = GwConfig(str(right.address), str(left.address), GW_FQDN, CLIENT_FQDN, str(right.subnet),
                      str(left.subnet), psk=PSK)
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), config.files())
    return topo, gw, client


def _run_cli(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [gw.python, "-m", "ikeguard", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _next_event(proc: subprocess.Popen[bytes], predicate: Callable[[dict[str, Any]], bool],
                timeout: float) -> dict[str, Any]:
    """The first JSON line from ``proc`` matching ``predicate`` (fails after ``timeout`` s)."""
    assert proc.stdout is not None
    fd, buffer, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            event = json.loads(line)
            if predicate(event):
                return event
    raise AssertionError(f"no matching event within {timeout} s")


def _installed(sas: list[dict[str, Any]]) -> bool:
    return bool(sas) and all(sa["state"] == "established" for sa in sas) and bool(sas[0]["children"]) \
        and sas[0]["children"][0]["state"] == "installed"


@pytest.mark.slow
def test_every_verb_against_ikeguard_and_strongswan(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    _topo, gw, client = _pair(netns_topology, strongswan_peer, ikeguard_gateway)

    # conns: configured, down
    conns = gw.cli("conns")
    assert [(c["name"], c["status"], c["ike_sas_up"]) for c in conns] == [("ikg", "down", 0)]
    assert "ikg" in gw.cli("conns", json=False) and "down" in gw.cli("conns", json=False)
    assert gw.cli("sas") == []
    assert gw.cli("sas", json=False).strip() == "no IKE SAs"

    # initiate (text): ikeguard starts, strongSwan shows the SA
    text = gw.cli("initiate", "--conn", "ikg", json=False)
    assert text.startswith("ikg: IKE SA ") and "established" in text
    ss_sa = client.wait_established("ikg", "net")
    assert not ss_sa.initiator
    sas = gw.wait_sas(_installed, timeout=10)
    assert len(sas) == 1
    sa = sas[0]
    assert sa["initiator"] is True and sa["remote_id"] == CLIENT_FQDN and sa["name"] == "ikg"
    assert sa["spi_i"] == f"{ss_sa.initiator_spi:016x}"
    child = sa["children"][0]
    ss_child = ss_sa.child("net")
    assert (child["spi_in"], child["spi_out"]) == (f"{ss_child.spi_out:08x}", f"{ss_child.spi_in:08x}")
    for key in ("name", "uniqueid", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                "local_id", "remote_id", "initiator", "proposal", "established_at", "rekey_at", "reauth_at"):
        assert key in sa
    table = gw.cli("sas", json=False)
    assert CLIENT_FQDN in table and "└ net" in table and child["spi_in"] in table
    assert [c["status"] for c in gw.cli("conns")] == ["up"]
    assert gw.cli("sas", "--peer", CLIENT_FQDN)[0]["uniqueid"] == sa["uniqueid"]
    assert gw.cli("sas", "--conn", "nope") == []

    # rekey the child by IKE SA id: new SPIs on both sides
    rekey = gw.cli("rekey", "--uniqueid", str(sa["uniqueid"]), "--child", "net")
    assert rekey["rekeyed"] == 1 and rekey["sas"][0]["old_spi_in"] == child["spi_in"]
    rekeyed = gw.wait_sas(lambda s: _installed(s) and s[0]["children"][0]["spi_in"] != child["spi_in"]
                          and len(s[0]["children"]) == 1, timeout=10, what="child rekeyed")
    new_in = rekeyed[0]["children"][0]["spi_in"]
    client.wait_for(lambda ss: bool(ss) and any(f"{c.spi_out:08x}" == new_in and c.state == "INSTALLED"
                                                for c in ss[0].children), what="strongSwan sees the rekey")

    # terminate (JSON): DELETE reaches strongSwan, its SA is gone; `ikeguard events` follows it live
    argv = [gw.python, "-m", "ikeguard", "events", "--json", "--socket", str(gw.control_socket)]
    events = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        gw.wait_audit(lambda e: e["event"] == "admin.command" and e["details"]["command"] == "events",
                      what="events stream open")
        assert gw.cli("terminate", "--conn", "ikg") == {"terminated": 1}
        client.wait_for(lambda ss: ss == [], what="strongSwan's IKE SA deleted")
        gw.wait_sas(lambda s: s == [], what="SA gone on ikeguard")
        assert "received DELETE for IKE_SA" in client.log()
        down = _next_event(events, lambda e: e["event"] == "ike.down", timeout=10)
        assert down["connection"] == "ikg" and down["remote_id"] == CLIENT_FQDN
    finally:
        events.terminate()
        events.wait(5)

    # initiate (JSON) brings it back; terminate by peer (text)
    ids = gw.cli("initiate", "--conn", "ikg", "--timeout", "10")["ike_uniqueids"]
    assert len(ids) >= 2  # the IKE SA and its Child SA
    client.wait_established("ikg", "net")
    assert gw.cli("terminate", "--peer", CLIENT_FQDN, json=False).strip() == "1 SA terminated"
    client.wait_for(lambda ss: ss == [], what="strongSwan's IKE SA deleted again")

    # strongSwan initiates; ikeguard rekeys the IKE SA itself
    client.initiate(child="net", ike="ikg")
    sas = gw.wait_sas(_installed, timeout=10)
    old_spi = sas[0]["spi_i"]
    rekeyed = gw.cli("rekey", "--conn", "ikg", json=False)
    assert rekeyed.startswith(f"IKE SA {sas[0]['uniqueid']} (ikg) rekeyed")
    gw.wait_sas(lambda s: _installed(s) and s[0]["spi_i"] != old_spi, timeout=10, what="IKE SA rekeyed")

    # errors: exit 1 with the gateway's reason, exit 2 without a gateway
    missing = _run_cli(gw, "terminate", "--uniqueid", "9999", "--socket", str(gw.control_socket))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "ikeguard: terminate: no SA matches the selection"
    unknown = _run_cli(gw, "initiate", "--conn", "nope", "--socket", str(gw.control_socket))
    assert unknown.returncode == 1 and "no connection 'nope'" in unknown.stderr
    nosock = _run_cli(gw, "sas", "--socket", str(gw.workdir / "no.sock"))
    assert nosock.returncode == 2
    expected = f"ikeguard: gateway not running? no control socket at {gw.workdir / 'no.sock'}"
    assert nosock.stderr.strip() == expected
    # -c FILE finds the socket through the config's state_dir
    via_config = _run_cli(gw, "sas", "-c", str(gw.workdir / "gateway.toml"), "--json")
    assert via_config.returncode == 0, via_config.stderr

    # every command is audited with the operator (root) and the outcome
    commands = [e for e in gw.audit_events() if e["event"] == "admin.command"]
    texts = [e["details"]["command"] for e in commands]
    assert any(t.startswith("initiate conn=ikg") for t in texts) and "terminate conn=ikg" in texts
    assert f"terminate peer={CLIENT_FQDN}" in texts and "terminate uniqueid=9999" in texts
    assert all(e["admin"] == "root" for e in commands)
    failed = next(e for e in commands if e["details"]["command"] == "terminate uniqueid=9999")
    assert failed["outcome"] == "failure"


def test_control_socket_is_owner_only(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    _topo, gw, _client = _pair(netns_topology, strongswan_peer, ikeguard_gateway)
    mode = gw.control_socket.stat().st_mode & 0o777
    assert mode == 0o600
    assert not gw.control_socket.parent.stat().st_mode & 0o002
    # an unprivileged user cannot even connect
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", gw.python, "-c",
                             "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                             str(gw.control_socket)], capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode != 0 and "PermissionError" in result.stderr
