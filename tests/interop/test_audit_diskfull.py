"""Issue 8, PCI DSS 10.7 with the real gateway: `ikeguard run` with its state_dir on a small tmpfs that fills
up while a tunnel to strongSwan is up. The alarm is raised (metric ikeguard_audit_store_healthy 0, an ERROR
line), a second strongSwan initiation is refused, and so is a new Child SA on the existing IKE SA
(strongSwan's `--child host` gets NO_ADDITIONAL_SAS, `ikeguard initiate --child` the reason); the existing
SA stays ESTABLISHED and carries ping through the userspace data plane while DPD runs; when space returns the
store records audit.store.failed/recovered and the queued events (the refused Child SA's child.failed among
them), the chain verifies, and the second initiation and the new Child SA succeed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ikeguard.audit.store import AuditStore, read_verification_key
from ikeguard.tools.netns import Topology, wait_until
from tests.audit.gateway_lab import (
    PSK,
    GatewayFactory,
    PeerFactory,
    client_connection,
    gateway_config,
    gateway_files,
    metric,
)
from tests.audit.helpers import fill_filesystem, mounted_tmpfs
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import ChildConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.slow]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs for the state directory, unmounted at the end (after the gateway has stopped)."""
    with mounted_tmpfs(tmp_path / "state-tmpfs", "3m") as mnt:
        yield mnt


def _ping(topo: Topology) -> None:
    left, right = topo.left, topo.right
    result = left.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                                str(left.subnet_address), str(right.subnet_address), check=False)
    assert result.returncode == 0 and " 0% packet loss" in result.stdout, result.stdout + result.stderr


def _client(factory: PeerFactory, topo: Topology) -> StrongSwanPeer:
    """strongSwan with ``ikg`` (children ``net`` and ``host``, a host-to-host Child SA inside ``net``'s
    subnets, added later on the same IKE SA) and ``ikg2`` (a second IKE SA)."""
    host = ChildConfig(name="host", local_ts=[f"{topo.left.subnet_address}/32"],
                       remote_ts=[f"{topo.right.subnet_address}/32"], esp_proposals=[ESP_PROPOSAL])
    ikg = client_connection(topo, "ikg")
    ikg = replace(ikg, children=[*ikg.children, host])
    return factory(topo.left.namespace, "client", connections=[ikg, client_connection(topo, "ikg2")],
                   psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)],
                   charon_options={"retransmit_timeout": 1, "retransmit_tries": 1})


def _children(client: StrongSwanPeer) -> list[str]:
    return sorted(c.name for sa in client.list_sas() if sa.name == "ikg" for c in sa.children
                  if c.state == "INSTALLED")


def _healthy(topo: Topology) -> float | None:
    return metric(topo.right.namespace, "ikeguard_audit_store_healthy").get("")


def test_disk_full_refuses_new_sas_keeps_existing_and_recovers(
    small_tmpfs: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("direct")
    state = small_tmpfs / "state"
    config = gateway_config(topo, None, dataplane="userspace", dpd_delay="2s").replace(
        'state_dir = "state"', f'state_dir = "{state}"')
    gw = ikeguard_gateway(topo.right.namespace, "gw", config, gateway_files())
    assert gw.state_dir == state
    client = _client(strongswan_peer, topo)
    client.initiate(child="net", ike="ikg")
    first = client.wait_established("ikg", "net")
    gw.wait_sas(lambda sas: len(sas) == 1 and sas[0]["children"][0]["state"] == "installed", timeout=10)
    _ping(topo)
    assert _healthy(topo) == 1

    filler = fill_filesystem(small_tmpfs)
    try:
        # activity the gateway must record (operator queries) until a commit fails: the alarm
        assert wait_until(lambda: gw.request("sas") is not None and _healthy(topo) == 0, 20, interval=0.2), \
            "store never reported the full disk"
        full_since = time.monotonic()

        # a new IKE SA is refused (PCI DSS 10.7): strongSwan's second connection gets no answer
        with pytest.raises(StrongSwanError):
            client.initiate(child="net", ike="ikg2", timeout=6)
        assert "refusing new IKE SAs" in gw.log()
        assert not any(sa.name == "ikg2" and sa.state == "ESTABLISHED" for sa in client.list_sas())

        # a new Child SA on the existing IKE SA is refused too (RFC 7296 §1.3: NO_ADDITIONAL_SAS), either way
        with pytest.raises(StrongSwanError):
            client.initiate(child="host", ike="ikg", timeout=6)
        assert "NO_ADDITIONAL_SAS" in client.log()
        assert _children(client) == ["net"]
        # the operator's initiate of the established connection reuses its IKE SA (one connection, one IKE
        # SA) and, its Child SA being up, adds none
        gw.cli("initiate", "--conn", "ikg", "--child", "net", "--timeout", "5")
        assert len(gw.sas()) == 1 and len(gw.sas()[0]["children"]) == 1

        # the existing SA is kept: still ESTABLISHED on both sides with the same SPIs, DPD answered, ping ok
        while time.monotonic() - full_since < 6:  # three DPD intervals on the full disk
            time.sleep(0.5)
        sas = gw.sas()
        assert len(sas) == 1 and sas[0]["state"] == "established"
        assert sas[0]["spi_i"] == f"{first.initiator_spi:016x}"
        kept = [sa for sa in client.list_sas() if sa.name == "ikg"]
        assert len(kept) == 1 and kept[0].state == "ESTABLISHED"
        assert kept[0].initiator_spi == first.initiator_spi
        _ping(topo)
        assert _healthy(topo) == 0
    finally:
        filler.unlink(missing_ok=True)

    # space returns: the writer's retry succeeds, the alarm clears, new SAs are accepted again
    assert wait_until(lambda: _healthy(topo) == 1, 15), gw.log_tail(40)
    client.initiate(child="net", ike="ikg2", timeout=10)
    client.wait_established("ikg2", "net")
    client.initiate(child="host", ike="ikg", timeout=10)  # the refused Child SA is accepted now
    assert _children(client) == ["host", "net"]
    assert wait_until(lambda: len(gw.sas(conn="ikg")) == 2
                      and sum(len(sa["children"]) for sa in gw.sas(conn="ikg")) == 3, 10)
    assert wait_until(lambda: [e["event"] for e in gw.audit_events()].count("ike.up") == 2, 10)
    events = gw.audit_events()
    names = [e["event"] for e in events]
    up_first = events[names.index("ike.up")]  # ike.* records carry the IKE SPIs as strongSwan sees them
    assert (up_first["details"]["spi_i"], up_first["details"]["spi_r"]) == (
        f"{first.initiator_spi:016x}", f"{first.responder_spi:016x}")
    failed, recovered = names.index("audit.store.failed"), names.index("audit.store.recovered")
    assert failed < recovered
    assert "full" in events[failed]["reason"].lower() or "space" in events[failed]["reason"].lower()
    assert events[recovered]["details"]["outage_seconds"] >= 5
    # the events queued while the disk was full follow, then the new IKE SA: records flow again
    assert "admin.command" in names[recovered:]
    assert names[recovered:].count("ike.up") == 1
    refused = [e for e in events[recovered:] if e["event"] == "child.failed"]
    assert len(refused) == 1 and "audit trail cannot be written" in refused[0]["reason"]
    assert refused[0]["ike_uniqueid"] == up_first["ike_uniqueid"]  # on the kept IKE SA
    store = AuditStore(state, create=False)
    try:
        assert store.verify(read_verification_key(state / "audit-verification.key")).ok
    finally:
        store.close()
    gw.stop()
