"""Smoke test of the harness: two real strongSwan peers in two namespaces build a tunnel and carry a ping."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.netns import NetnsLab, Topology, live_namespaces
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import IkeSaInfo, StrongSwanPeer, live_charons
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
PeerFactory = Callable[..., StrongSwanPeer]


def _connection(
    local_addr: str, remote_addr: str, local: AuthConfig, remote: AuthConfig, local_ts: str, remote_ts: str
) -> ConnectionConfig:
    return ConnectionConfig(
        name="ikg",
        local_addrs=[local_addr],
        remote_addrs=[remote_addr],
        local=local,
        remote=remote,
        proposals=[IKE_PROPOSAL],
        children=[
            ChildConfig(name="net", local_ts=[local_ts], remote_ts=[remote_ts], esp_proposals=[ESP_PROPOSAL])
        ],
    )


def _start_pair(
    strongswan_peer: PeerFactory,
    topo: Topology,
    *,
    psk: str | None = None,
    pki: TestPki | None = None,
    ipv6: bool = False,
    gw_remote: str | None = None,
) -> tuple[StrongSwanPeer, StrongSwanPeer]:
    """Start the gateway (right) and the client (left) with mirrored connections; PSK or certificates."""
    left, right = topo.left, topo.right
    if ipv6:
        addrs = (str(left.address6), str(right.address6))
        subnets = (str(left.subnet6), str(right.subnet6))
    else:
        addrs = (str(left.address), str(right.address))
        subnets = (str(left.subnet), str(right.subnet))

    def auth(fqdn: str, *, own_cert: str = "") -> AuthConfig:
        if psk is not None:
            return AuthConfig("psk", fqdn)
        if own_cert:
            return AuthConfig("pubkey", fqdn, certs=[f"{own_cert}.pem"])
        return AuthConfig("pubkey", fqdn, cacerts=["ca.pem"])

    def peer_kwargs(stem: str) -> dict[str, object]:
        if psk is not None:
            return {"psks": [PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=psk)]}
        assert pki is not None
        return {"certs": {stem: getattr(pki, stem)}, "cacerts": {"ca": pki.ca.cert}}

    gw = strongswan_peer(
        right.namespace,
        "gw",
        connections=[
            _connection(
                addrs[1],
                gw_remote or addrs[0],
                auth(GW_FQDN, own_cert="gw"),
                auth(CLIENT_FQDN),
                subnets[1],
                subnets[0],
            )
        ],
        **peer_kwargs("gw"),
    )
    client = strongswan_peer(
        left.namespace,
        "client",
        connections=[
            _connection(
                addrs[0],
                addrs[1],
                auth(CLIENT_FQDN, own_cert="client"),
                auth(GW_FQDN),
                subnets[0],
                subnets[1],
            )
        ],
        **peer_kwargs("client"),
    )
    return gw, client


def _ping(topo: Topology, count: int = 3) -> subprocess.CompletedProcess[str]:
    return topo.left.namespace.run(
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        "0.2",
        "-W",
        "2",
        "-I",
        str(topo.left.subnet_address),
        str(topo.right.subnet_address),
        check=False,
    )


def _assert_tunnel(client: StrongSwanPeer, gw: StrongSwanPeer, topo: Topology) -> None:
    """Both sides ESTABLISHED/INSTALLED, configured proposal, mirrored SPIs; a ping goes through."""
    c_sa: IkeSaInfo = client.wait_established("ikg", "net")
    g_sa: IkeSaInfo = gw.wait_established("ikg", "net")
    assert c_sa.proposal == g_sa.proposal == IKE_PROPOSAL
    assert (c_sa.initiator, g_sa.initiator) == (True, False)
    assert (c_sa.initiator_spi, c_sa.responder_spi) == (g_sa.initiator_spi, g_sa.responder_spi)
    assert c_sa.initiator_spi != 0 and c_sa.responder_spi != 0
    c_child, g_child = c_sa.child("net"), g_sa.child("net")
    # The first CHILD_SA comes out of IKE_AUTH, which carries no KE payload (RFC 7296 §1.2): no PFS group yet.
    assert c_child.proposal == g_child.proposal == "aes256gcm16"
    assert (c_child.spi_in, c_child.spi_out) == (g_child.spi_out, g_child.spi_in)
    assert c_child.encap and g_child.encap  # libipsec: ESP in UDP (RFC 3948)
    assert c_child.local_ts == (str(topo.left.subnet),) and c_child.remote_ts == (str(topo.right.subnet),)
    assert g_child.local_ts == (str(topo.right.subnet),) and g_child.remote_ts == (str(topo.left.subnet),)

    before_out, before_in = c_child.packets_out, g_child.packets_in
    result = _ping(topo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0% packet loss" in result.stdout
    c_after = client.list_sas()[0].child("net")
    g_after = gw.list_sas()[0].child("net")
    assert c_after.packets_out >= before_out + 3 and c_after.packets_in >= 3
    assert g_after.packets_in >= before_in + 3 and g_after.packets_out >= 3
    assert g_after.bytes_in > 0 and c_after.bytes_in > 0


def test_certificate_tunnel_carries_ping(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, test_pki: TestPki
) -> None:
    topo = netns_topology("direct")
    gw, client = _start_pair(strongswan_peer, topo, pki=test_pki)
    client.initiate(child="net", ike="ikg")
    _assert_tunnel(client, gw, topo)
    # The gateway verified the client's ECDSA P-384 certificate against our CA (RFC 7296 §2.15).
    assert f"authentication of '{CLIENT_FQDN}' with ECDSA" in gw.log()

    # A CHILD_SA rekey (CREATE_CHILD_SA with KE, RFC 7296 §1.3.3) now applies the PFS group: new SPIs.
    old_spi = client.list_sas()[0].child("net").spi_in
    assert client.rekey(child="net") == 1
    sas = client.wait_for(
        lambda sas: any(c.state == "INSTALLED" and c.spi_in != old_spi for sa in sas for c in sa.children),
        what="rekeyed CHILD_SA",
    )
    new_child = next(c for c in sas[0].children if c.state == "INSTALLED" and c.spi_in != old_spi)
    assert new_child.proposal == ESP_PROPOSAL
    assert _ping(topo, 2).returncode == 0

    client.terminate(ike="ikg")
    assert client.list_sas() == []
    gw.wait_for(lambda sas: sas == [], what="IKE_SA deleted on the gateway")
    assert _ping(topo, 1).returncode != 0  # no tunnel, no route: the protected subnets are unreachable


def test_psk_tunnel_carries_ping(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory
) -> None:
    topo = netns_topology("direct")
    psk = "smoke-test-psk-7f3a9c1e5b2d4086"
    gw, client = _start_pair(strongswan_peer, topo, psk=psk)
    client.initiate(child="net", ike="ikg")
    _assert_tunnel(client, gw, topo)
    assert "with pre-shared key successful" in gw.log()
    assert "smoke-test-psk" not in gw.log() + client.log()  # the secret never reaches a log


def test_lab_close_stops_charon_and_deletes_namespaces(tmp_path: Path) -> None:
    """Closing the lab (what every fixture does) stops the charon it started and removes its namespaces."""
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab)
        peer = StrongSwanPeer(
            topo.right.namespace,
            tmp_path / "solo",
            name="solo",
            connections=[
                ConnectionConfig(
                    local_addrs=[str(topo.right.address)],
                    remote_addrs=["%any"],
                    local=AuthConfig("psk", GW_FQDN),
                    remote=AuthConfig("psk"),
                )
            ],
            psks=[PskSecret([GW_FQDN], "x" * 20)],
        ).start()
        pid = peer.pid
        names = [ns.name for ns in lab.namespaces]
        assert pid in live_charons() and set(names) <= set(live_namespaces())
        assert "ipsec0" in topo.right.namespace.ip("link").stdout  # libipsec's TUN device
    assert pid not in live_charons()
    assert not Path(f"/proc/{pid}").exists() or "charon" not in Path(f"/proc/{pid}/cmdline").read_text()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in listed for name in names)


def test_psk_tunnel_through_nat(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory
) -> None:
    """Client behind the masquerading router: both sides see the real NAT (RFC 7296 §2.23); ESP flows."""
    topo = netns_topology("nat")
    psk = "nat-test-psk-0b9e8d7c6a5f4e3d"
    gw, client = _start_pair(strongswan_peer, topo, psk=psk, gw_remote="%any")
    client.initiate(child="net", ike="ikg")
    c_sa = client.wait_established("ikg", "net")
    g_sa = gw.wait_established("ikg", "net")
    assert c_sa.local_host == str(topo.left.address) and g_sa.remote_host == str(topo.public_address)
    assert c_sa.nat_local and not c_sa.nat_fake  # a real NAT, not libipsec's faked one
    assert g_sa.nat_remote
    result = _ping(topo, 2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert gw.list_sas()[0].child("net").packets_in >= 2


def test_config_writer_survives_charons_parser(netns_lab: NetnsLab, strongswan_peer: PeerFactory) -> None:
    """Values with spaces, commas and quotes (DN identities) reach charon unchanged through swanctl.conf."""
    ns = netns_lab.namespace("cfg")
    dn = 'C=CH, O=ikeguard "lab", CN=gw.ss-lab.example'
    peer = strongswan_peer(
        ns,
        "cfg",
        psks=[PskSecret([dn], 'p"s k,#1')],
        connections=[
            ConnectionConfig(
                name="quoted",
                local_addrs=["192.0.2.1"],
                remote_addrs=["192.0.2.2", "192.0.2.3"],
                local=AuthConfig("psk", dn),
                remote=AuthConfig("psk", "client.ss-lab.example"),
                proposals=["aes256gcm16-prfsha384-ecp384", "aes128gcm16-prfsha256-ecp256"],
                children=[
                    ChildConfig(
                        "net",
                        ["198.51.100.0/25", "2001:db8:0:a::/64"],
                        ["198.51.100.128/25"],
                        ["aes256gcm16-ecp384"],
                        rekey_time="90m",
                    )
                ],
            )
        ],
    )
    conn = peer.list_conns()["quoted"]
    assert conn["local_addrs"] == ["192.0.2.1"] and conn["remote_addrs"] == ["192.0.2.2", "192.0.2.3"]
    assert conn["local-1"]["id"] == dn
    child = conn["children"]["net"]
    assert child["local-ts"] == ["198.51.100.0/25", "2001:db8:0:a::/64"]
    assert child["remote-ts"] == ["198.51.100.128/25"]
    assert child["rekey_time"] == str(90 * 60)
    assert "loaded ike secret 'ike-0'" in peer.swanctl("--load-creds", "--noprompt").stdout


def test_psk_tunnel_over_ipv6(netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory) -> None:
    """IPv6 outer addresses and IPv6 protected subnets: the same harness, the other family."""
    topo = netns_topology("direct")
    psk = "v6-test-psk-5e4d3c2b1a0f9e8d"
    gw, client = _start_pair(strongswan_peer, topo, psk=psk, ipv6=True)
    client.initiate(child="net", ike="ikg")
    c_sa = client.wait_established("ikg", "net")
    gw.wait_established("ikg", "net")
    assert c_sa.remote_host == str(topo.right.address6)
    assert c_sa.child("net").remote_ts == (str(topo.right.subnet6),)
    result = topo.left.namespace.run(
        "ping",
        "-6",
        "-n",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        "-I",
        str(topo.left.subnet_address6),
        str(topo.right.subnet_address6),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert gw.list_sas()[0].child("net").packets_in >= 2
