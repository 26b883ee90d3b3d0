"""packaging/ikeguard.service for real: started under the unit's capability bounding set (no other capability,
no new privileges) the gateway signals READY=1, carries traffic for strongSwan, reloads on the unit's
ExecReload signal and reports STOPPING=1 on SIGTERM (the unit's static hardening: tests/control/
test_systemd_unit.py)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.control.test_systemd_unit import unit_settings
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

PSK = "unit-test-psk-7a1c3e5b9d2f4860"
# capability numbers (linux/capability.h) of the names the unit may use
CAP_BITS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def _caps_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


@pytest.mark.root
@pytest.mark.interop
def test_gateway_runs_with_only_the_units_capabilities(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    names = unit_settings()["CapabilityBoundingSet"][-1].split()
    caps = ",".join("+" + n.removeprefix("CAP_").lower() for n in names)
    config = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet), str(left.subnet),
                      psk=PSK, dataplane="userspace")
    workdir = tmp_path / "gw"
    argv = ["setpriv", f"--inh-caps=-all,{caps}", f"--bounding-set=-all,{caps}", "--no-new-privs",
            sys.executable, "-m", "ikeguard", "run", "-c", str(workdir / "gateway.toml")]
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), config.files(), argv=argv)
    assert gw.pid is not None
    assert "READY=1" in gw.notifications  # Type=notify readiness
    assert _caps_of(gw.pid) == sum(1 << CAP_BITS[n] for n in names)  # nothing more than the unit grants

    client = strongswan_peer(left.namespace, "client", connections=[ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        proposals=[IKE_PROPOSAL], local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN),
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])],
        psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
    client.initiate(child="net", ike="ikg")
    gw.wait_sas(lambda sas: bool(sas) and bool(sas[0]["children"]), what="tunnel up")
    ping = left.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", str(left.subnet_address),
                              str(right.subnet_address), check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr  # TUN + routes with CAP_NET_ADMIN only

    gw.send_signal(signal.SIGHUP)  # what ExecReload sends
    gw.wait_audit(lambda e: e["event"] == "config.loaded" and e.get("admin") == "SIGHUP", what="reload")
    gw.send_signal(signal.SIGTERM)
    assert gw.wait_exit(10) == 0
    assert "STOPPING=1" in gw.notify_messages()
    assert wait_until(lambda: client.list_sas() == [], 5)
