"""Hybrid post-quantum IKE setup cost against strongSwan 6.1: sequential IKE SA setups (IKE_SA_INIT, one
IKE_INTERMEDIATE with ML-KEM-768, IKE_AUTH with one Child SA, PSK) started by a strongSwan 6.1 initiator
over vici, answered by ikeguard or by another strongSwan 6.1, with and without ``ke1_mlkem768``.

strongSwan 6.1 has no load-tester in Debian's packages, so this measures latency per setup (one at a time,
each initiate waits for the Child SA, then the IKE SA is terminated), not peak throughput as bench_ike_setup
does for 5.9.8. Needs root and the strongSwan 6.1 chroot (scripts/build-strongswan61.sh).
``IKG_BENCH_PQ_SAS`` (default 30) setups per case.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)
from tests.harness.strongswan61 import StrongSwan61Peer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, Topology

PSK = "bench-pq-psk-5e0b1c9a7d3f4e21"
GW, CLIENT = "gw.bench.example", "client.bench.example"


def _run(responder: str, proposal: str, count: int, work: Path) -> float:
    with NetnsLab("ikpq") as lab:
        topo = Topology.two_hosts(lab)
        left, right = topo.left, topo.right
        psks = [PskSecret(ids=[GW, CLIENT], secret=PSK)]
        child = ChildConfig(local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                            esp_proposals=["aes256gcm16"])
        conn = ConnectionConfig(local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
                                local=AuthConfig("psk", CLIENT), remote=AuthConfig("psk", GW),
                                proposals=[proposal], children=[child], unique="never")
        gw: GatewayProcess | StrongSwan61Peer
        if responder == "ikeguard":
            secrets = [IkgSecret("peer", [CLIENT, GW], PSK)]
            text = gateway_toml([IkgConnection(
                name="ikg", remote_addrs=["%any"], local=IkgLocal(auth="psk", id=GW),
                remote=IkgRemote(auth="psk", id=CLIENT), proposals=[proposal],
                children=[IkgChild(name="net", local_ts=[str(right.subnet)], remote_ts=[str(left.subnet)],
                                   esp_proposals=["aes256gcm16"])])],
                listen=[str(right.address)], secrets=secrets)
            gw = GatewayProcess(right.namespace.name, work / "ikg", text, secret_files(secrets), name="ikg")
            gw.start()
        else:
            mirror = ConnectionConfig(local_addrs=[str(right.address)], remote_addrs=["%any"],
                                      local=AuthConfig("psk", GW), remote=AuthConfig("psk", CLIENT),
                                      proposals=[proposal], children=[ChildConfig(
                                          local_ts=[str(right.subnet)], remote_ts=[str(left.subnet)],
                                          esp_proposals=["aes256gcm16"])])
            gw = StrongSwan61Peer(right.namespace, work / "ss-gw", connections=[mirror], psks=psks,
                                  log_level=0, name="gw").start()
        client = StrongSwan61Peer(left.namespace, work / "ss-client", connections=[conn], psks=psks,
                                  log_level=0, name="client").start()
        try:
            start = time.perf_counter()
            for _ in range(count):
                client.initiate(child="net", ike="ikg", timeout=10)
                client.terminate(ike="ikg", timeout=10)
            return (time.perf_counter() - start) / count
        finally:
            client.stop()
            gw.stop()


def main() -> None:
    """Print milliseconds per sequential setup + teardown for each responder and proposal."""
    if os.geteuid() != 0:
        print("bench_pq_setup: needs root (network namespaces, chroot)")
        return
    count = int(os.environ.get("IKG_BENCH_PQ_SAS", "30"))
    with tempfile.TemporaryDirectory(prefix="ikg-bench-pq-") as tmp:
        for proposal in ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-prfsha384-ecp384-ke1_mlkem768"):
            for responder in ("strongswan61", "ikeguard"):
                per = _run(responder, proposal, count, Path(tmp) / f"{responder}-{len(proposal)}")
                print(f"{proposal:45s} responder {responder:12s}: {per * 1000:6.1f} ms per setup+teardown "
                      f"({count} sequential, strongSwan 6.1 initiator)")


if __name__ == "__main__":
    main()
