"""Issue 20: etcd over mutual TLS (``[ha] etcd_ca/etcd_cert/etcd_key``, service/ha/store.py through etcd3gw):
a real etcd on loopback that requires client certificates from the pair's CA. The HA node elects itself,
replicates and takes over over https with its client certificate; without a client certificate, with one
from another CA, or trusting another CA than the server's, every call fails with a StoreError (and the node
then holds no lease, so it sends nothing). Certificates are made relative to now."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.fence import Fence
from ikeguard.service.ha.replicator import HaNode
from ikeguard.service.ha.seal import ClusterKey
from ikeguard.service.ha.store import EtcdStore, StoreError
from ikeguard.tools.certfactory import CertificateAuthority
from tests.engine.harness import FAST
from tests.harness.etcd import EtcdTls, etcd
from tests.service.test_ha_etcd import key_file, tunnel

SERVER_AUTH, CLIENT_AUTH = "serverAuth", "clientAuth"


def pki(tmp_path: Path) -> tuple[EtcdTls, Path, Path]:
    """The pair's CA with etcd's server certificate and a node's client certificate; plus a client
    certificate (and CA) of another authority."""
    ca = CertificateAuthority.create_root("CN=ha pair etcd CA")
    d = tmp_path / "pki"
    d.mkdir()
    (d / "ca.crt").write_bytes(ca.cert.public_bytes(Encoding.PEM))
    # clientAuth too: etcd's JSON gateway dials etcd's own gRPC server with this certificate (etcd 3.4
    # answers every gateway call 503 "connection closed" without it)
    server = ca.issue_leaf("CN=etcd", sans=[ipaddress.IPv4Address("127.0.0.1")],
                           eku=[SERVER_AUTH, CLIENT_AUTH])
    client = ca.issue_leaf("CN=gw1", eku=[CLIENT_AUTH])
    s, c = server.write_pem(d, "server"), client.write_pem(d, "gw1")
    other = CertificateAuthority.create_root("CN=another CA")
    (d / "other-ca.crt").write_bytes(other.cert.public_bytes(Encoding.PEM))
    intruder = other.issue_leaf("CN=intruder", eku=[CLIENT_AUTH]).write_pem(d, "intruder")
    return EtcdTls(d / "ca.crt", s.cert, s.key, c.cert, c.key), intruder.cert, intruder.key


def test_replication_and_lease_over_mutual_tls(tmp_path: Path) -> None:
    net, b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))
    tls, intruder_cert, intruder_key = pki(tmp_path)
    with etcd(tmp_path, tls=tls) as server:
        assert server.url.startswith("https://")
        store = EtcdStore([server.url], "/tls/", timeout=2.0, ca=str(tls.ca), cert=str(tls.client_cert),
                          key=str(tls.client_key))
        fence = Fence(store, "gw1", ttl=2)
        assert fence.acquire() and fence.renew(), fence.error
        active = HaNode("gw1", store, key, fence=fence)
        assert asyncio.run(active.sync(net.b.manager)) and active.synced_sas == 1
        fence.release()
        engine = IkeManager(b_conns, FAST, random=DeterministicRandom(9))
        standby = HaNode("gw2", EtcdStore([server.url], "/tls/", ca=str(tls.ca), cert=str(tls.client_cert),
                                          key=str(tls.client_key)), key)
        result = asyncio.run(standby.take_over(engine))
        assert result.restored and len(engine.ike_sas()) == 1

        refused = {
            "no client certificate": EtcdStore([server.url], "/tls/", timeout=2.0, ca=str(tls.ca)),
            "another CA's client": EtcdStore([server.url], "/tls/", timeout=2.0, ca=str(tls.ca),
                                             cert=str(intruder_cert), key=str(intruder_key)),
            "server not trusted": EtcdStore([server.url], "/tls/", timeout=2.0,
                                            ca=str(tls.ca.parent / "other-ca.crt"),
                                            cert=str(tls.client_cert), key=str(tls.client_key)),
        }
        for why, bad in refused.items():
            with pytest.raises(StoreError):
                bad.read()
            assert not Fence(bad, "gw2", ttl=2).acquire(), why
