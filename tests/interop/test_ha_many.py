"""Issue 20 "Done when" 3: many tunnels survive a failover. One strongSwan 5.9.8 charon opens TUNNELS IKE SAs
(each its own connection and identity c<i>.client.example, one Child SA each) to the virtual address of
an ikeguard pair; the active node is killed with SIGKILL; the standby restores every SA (the time to take
them over is reported) and strongSwan still holds the same IKE and Child SPIs for all of them, none
renegotiated; strongSwan answers the new node's liveness check on every one of them; a Child SA rekey and
an IKE SA rekey of two of them succeed. IKE level only: the gateways run the "none" data plane (traffic
through a restored SA is covered by test_ha_failover.py), strongSwan installs no policies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, wait_until
from tests.harness.ha_pair import PSK, VIP, audit_time, ha_pair
from tests.harness.plugin import GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.slow]

TUNNELS = 200


def _gateway_config() -> GwConfig:
    return GwConfig(VIP, "%any", GW_FQDN, "*.client.example", "198.51.100.0/25", "dynamic", psk=PSK,
                    dataplane="none", dpd_delay="5s")


def _one_secret(text: str) -> str:
    """One pre-shared key for every client identity (the baseline profile accepts a secret without ids)."""
    return text.replace('ids = ["*.client.example", "gw.example.net"]\n', "").replace(
        'ids = ["*.client.example", "' + GW_FQDN + '"]\n', "")


def test_many_tunnels_survive_a_failover(
    netns_lab: NetnsLab, strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    with ha_pair(netns_lab, ikeguard_gateway, tmp_path, config=_gateway_config(), adjust=_one_secret) as pair:
        (_ns1, gw1), (_ns2, gw2) = pair.nodes
        conns = [ConnectionConfig(
            name=f"t{i}", local_addrs=["192.0.2.100"], remote_addrs=[VIP],
            local=AuthConfig("psk", f"c{i}.client.example"), remote=AuthConfig("psk", GW_FQDN),
            proposals=[IKE_PROPOSAL],
            children=[ChildConfig(name=f"t{i}", remote_ts=["198.51.100.0/25"], esp_proposals=[ESP_PROPOSAL],
                                  extra={"policies": "no"})],
        ) for i in range(1, TUNNELS + 1)]
        peer = strongswan_peer(pair.peer_ns, "client", connections=conns,
                               psks=[PskSecret(ids=[GW_FQDN, *(f"c{i}.client.example"
                                                              for i in range(1, TUNNELS + 1))], secret=PSK)])
        started = time.monotonic()
        for i in range(1, TUNNELS + 1):
            peer.initiate(child=f"t{i}", ike=f"t{i}", timeout=20)
        setup = time.monotonic() - started
        before = {s.name: (s.initiator_spi, s.responder_spi, s.children[0].spi_in if s.children else None)
                  for s in peer.list_sas()}
        assert len(before) == TUNNELS and all(v[2] is not None for v in before.values()), len(before)
        assert wait_until(lambda: gw1.cli("ha", "status")["synced_sas"] == TUNNELS, 20, interval=0.2), \
            gw1.cli("ha", "status")
        time.sleep(1.0)

        mark = len(peer.log())
        killed = time.time()
        gw1.kill()
        took = gw2.wait_audit(lambda e: e["event"] == "ha.takeover", timeout=20)
        assert took["outcome"] == "success", took
        active_after = audit_time(took) - killed
        takeover = gw2.cli("ha", "status")["last_takeover"]
        assert takeover["restored"] == TUNNELS and not takeover["failed"], takeover
        assert len(gw2.sas()) == TUNNELS

        # the new node's liveness check over every restored SA, then DPD (5 s): strongSwan answers on each
        answered: set[str] = set()
        resent: set[str] = set()
        for _ in range(60):
            # an SA whose old node sent a request after its last replication gets strongSwan's cached
            # answer first ("received retransmit of request with ID n, retransmitting response")
            lines = [line for line in peer.log()[mark:].splitlines() if "<" in line and (
                "generating INFORMATIONAL response" in line or "retransmitting response" in line)]
            answered = {line.split("<", 1)[1].split("|", 1)[0] for line in lines}
            resent = {line.split("<", 1)[1].split("|", 1)[0] for line in lines if "retransmitting" in line}
            if len(answered) == TUNNELS:
                break
            time.sleep(0.5)
        missing = {f"t{i}" for i in range(1, TUNNELS + 1)} - answered
        if missing:
            name = sorted(missing)[0]
            print("DEBUG", name, "\n".join(x for x in peer.log()[mark:].splitlines() if f"<{name}|" in x))
        assert not missing, len(missing)
        # SAs whose first liveness check reused an ID the old node had used: strongSwan ignored it and the
        # next probe (engine/ha_mid_sync.py LivenessProbe) took the next ID
        probed = {line.split("<", 1)[1].split("|", 1)[0] for line in peer.log()[mark:].splitlines()
                  if "<" in line and "ignored" in line and "received message ID" in line}
        after = {s.name: (s.initiator_spi, s.responder_spi, s.children[0].spi_in if s.children else None)
                 for s in peer.list_sas()}
        assert after == before  # same IKE and Child SPIs for every tunnel: nothing renegotiated
        assert "dpd.timeout" not in {e["event"] for e in gw2.audit_events()}
        assert len(gw2.sas()) == TUNNELS

        peer.rekey(child="t7")
        assert wait_until(lambda: peer.list_sas("t7")[0].children[0].spi_in != before["t7"][2], 10, 0.2)
        peer.rekey(ike="t9")
        assert wait_until(lambda: (lambda s: len(s) == 1 and s[0].initiator_spi != before["t9"][0]
                                   and s[0].state == "ESTABLISHED")(peer.list_sas("t9")), 10, interval=0.2)
        print(f"{TUNNELS} tunnels: set up in {setup:.1f} s; after SIGKILL the standby had taken over "
              f"{active_after:.2f} s later (detection and the killed node's lease included), restored "
              f"{takeover['restored']} SAs in {takeover['seconds'] * 1000:.0f} ms (state "
              f"{takeover['state_age']:.1f} s old); same SPIs at strongSwan for all, each answered the new "
              f"node's liveness check ({len(probed)} after a probe to the next message ID, {len(resent)} "
              "with its cached answer: their old node had sent a request after its last replication), rekeys "
              "after the takeover pass")
