"""Issue 13 S4 and S5 through the running gateway (`ikeguard run`, 192.0.2.1), strongSwan initiators as the
peers, certificates made with strongSwan's `pki` tool the way its operators make them.

S4: a received identity is never a pattern. The gateway's connection accepts the pattern ``*.clients.example``
(RFC 7296 §2.15 leaves the matching policy local; strongSwan's identification_t puts wildcards on the
configured side only). A strongSwan whose certificate names ``m1.clients.example`` but which sends
IDi = ``*.clients.example`` (strongSwan lets it: its own pattern id matches its certificate) gets
AUTHENTICATION_FAILED and an ``auth.failure`` naming the identity; the same peer sending its concrete name
comes up, and the gateway's SA, ``auth.success`` and everything keyed on the identity carry the concrete name.

S5: under profile cnsa-1 the gateway announces SIGNATURE_HASH_ALGORITHMS = SHA2_384 only and accepts AUTH
signed with ecdsa-sha384 or rsa/pss-sha384 only (RFC 7427 §4, RFC 9206). An RSA-3072 strongSwan configured
``auth = pubkey-sha384`` (PKCS#1 v1.5) is refused with the scheme in the audit reason, the same key with
``auth = rsa/pss-sha384`` is accepted; an ECDSA strongSwan configured ``ecdsa-sha256`` never gets an SA
(SHA-256 was not announced), ``ecdsa-sha384`` does.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    gateway_toml,
)
from tests.harness.multi_site import GATEWAY_ADDRESS, GATEWAY_SUBNET, SiteHost, SiteSpec, build_multi_site
from tests.harness.pki_tool import PkiTool, ToolCert, tool_path
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
GW_ID = "gw.clients.example"
PATTERN = "*.clients.example"
M_ID = "m1.clients.example"  # ECDSA P-384 peer
R_ID = "r1.clients.example"  # RSA-3072 peer
SITES = (
    SiteSpec("m", M_ID, "192.0.2.21", "198.51.100.128/26"),
    SiteSpec("r", R_ID, "192.0.2.22", "198.51.100.192/26"),
)
AUTH_FAILED = "received AUTHENTICATION_FAILED notify error"


class LabPki:
    """`pki --gen/--self/--issue/--signcrl`: an ECDSA P-384 CA (SHA-384), the gateway's and m1's ECDSA
    P-384 certificates and r1's RSA-3072 certificate, valid from now (the tool reads the clock)."""

    def __init__(self, directory: Path) -> None:
        ec = PkiTool(directory / "ec")
        self.ca = ec.self_signed_ca("ca", "C=US, O=Clients Lab, CN=Clients Lab CA", lifetime_days=90)
        self.gw = ec.issue("gw", self.ca, f"C=US, O=Clients Lab, CN={GW_ID}", sans=[GW_ID], lifetime_days=60)
        self.m = ec.issue("m1", self.ca, f"C=US, O=Clients Lab, CN={M_ID}", sans=[M_ID], lifetime_days=60)
        rsa = PkiTool(directory / "rsa", key_type="rsa", key_size=3072)
        self.r = rsa.issue("r1", self.ca, f"C=US, O=Clients Lab, CN={R_ID}", sans=[R_ID], lifetime_days=60)
        self.crl = subprocess.run(
            [tool_path("pki"), "--signcrl", "--cacert", str(self.ca.cert_path), "--cakey",
             str(self.ca.key_path), "--lifetime", "30", "--digest", "sha384", "--outform", "pem"],
            capture_output=True, check=True, timeout=60).stdout

    def gateway_files(self) -> dict[str, bytes | str]:
        return {"pki/ca.pem": self.ca.cert_pem(), "pki/gw.pem": self.gw.cert_pem(),
                "pki/gw.key": self.gw.key_pem(), "pki/lab.crl": self.crl}


def _waiver(rule: str) -> dict[str, str | int | float | bool]:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%d")
    return {"rule": rule, "scope": "audit.sinks", "reason": "interop test: no SIEM in the lab", "owner": "qa",
            "ticket": "TEST-13", "expires": expires}


def _connection(name: str, remote_id: str) -> IkgConnection:
    return IkgConnection(
        name=name, local_addrs=[GATEWAY_ADDRESS], remote_addrs=["%any"], proposals=[IKE_PROPOSAL],
        local=IkgLocal("pubkey", GW_ID, certs=["pki/gw.pem"], key="pki/gw.key"),
        remote=IkgRemote("pubkey", remote_id, cacerts=["lab"], revocation="strict"),
        children=[IkgChild("net", local_ts=[GATEWAY_SUBNET], remote_ts=["dynamic"],
                           esp_proposals=[ESP_PROPOSAL], rekey_time="1h", life_time="90m", rand_time="5m")],
        rekey_time="8h", reauth_time="1d", rand_time="10m", dpd_delay="30s", unique="replace")


def _gateway_config(profile: str, *, with_any: bool = False) -> str:
    """`clients` for every client of the lab CA (remote id the pattern, remote_ts the peer's address); with
    `with_any` also `anyone` (remote id %any: any identity its certificate proves, at lower precedence)."""
    regulated = profile != "baseline"
    conns = [_connection("clients", PATTERN)] + ([_connection("anyone", "%any")] if with_any else [])
    waivers = [_waiver("audit.siem-sink"), _waiver("audit.siem-delivery")] if regulated else []
    return gateway_toml(conns, profile=profile, listen=[GATEWAY_ADDRESS],
                        authorities=[IkgAuthority("lab", "pki/ca.pem", crls=["pki/lab.crl"])],
                        waivers=waivers, gateway={"retransmit_timeout": 1.0, "retransmit_tries": 3})


def _conn(site: SiteHost, name: str, identity: str, cert: str, auth: str = "pubkey") -> ConnectionConfig:
    """A swanctl.conf connection to the gateway: `local { auth = AUTH, id = IDENTITY, certs = CERT }`."""
    return ConnectionConfig(
        name=name, local_addrs=[site.address], remote_addrs=[GATEWAY_ADDRESS], proposals=[IKE_PROPOSAL],
        local=AuthConfig(auth, identity, certs=[cert]),
        remote=AuthConfig("pubkey", GW_ID, cacerts=["ca.pem"]),
        children=[ChildConfig("net", local_ts=["dynamic"], remote_ts=[GATEWAY_SUBNET],
                              esp_proposals=[ESP_PROPOSAL])])


def _peer(strongswan_peer: PeerFactory, site: SiteHost, name: str, pki: LabPki, cert: ToolCert,
          connections: list[ConnectionConfig]) -> StrongSwanPeer:
    return strongswan_peer(site.namespace, name, connections=connections,
                           certs={cert.name: cert.issued(pki.ca)}, cacerts={"ca": pki.ca.cert})


def _refused(peer: StrongSwanPeer, conn: str) -> None:
    with pytest.raises(StrongSwanError):
        peer.initiate(child="net", ike=conn, timeout=8)
    assert not any(sa.state == "ESTABLISHED" for sa in peer.list_sas(ike=conn))


def _failures(gw: GatewayProcess, address: str) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events() if e["event"] == "auth.failure"
            and e.get("remote_addr", "").startswith(address)]


def test_a_peer_claiming_the_pattern_is_refused_and_its_concrete_name_accepted(
    netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory, tmp_path: Path,
) -> None:
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    pki = LabPki(tmp_path / "lab")
    gw = ikeguard_gateway(net.gateway.namespace, "gw", _gateway_config("baseline", with_any=True),
                          pki.gateway_files())
    m = net["m"]
    peer = _peer(strongswan_peer, m, "m1", pki, pki.m, [
        _conn(m, "pattern", PATTERN, "m1.pem"),  # swanctl: local { id = *.clients.example }
        _conn(m, "anyid", "@%any", "m1.pem"),  # sent as ID_FQDN "%any" with m1's certificate
        _conn(m, "honest", M_ID, "m1.pem"),
    ])

    # The pattern as IDi: only `anyone` (%any) matches the literal name, and m1's certificate does not
    # contain it. Before the fix `clients` matched (pattern == pattern) and the certificate "proved" it.
    _refused(peer, "pattern")
    peer.wait_for_log(AUTH_FAILED, timeout=10)
    assert f"authentication of '{PATTERN}' (myself)" in peer.log()  # strongSwan signed as the pattern
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure" and e.get("remote_id") == PATTERN,
                            what="auth.failure for the pattern identity")
    assert "name_mismatch" in failure["reason"] and PATTERN in failure["reason"], failure

    # "%any" as IDi: just a name, not in the certificate (before the fix pki treated it as matching any SAN)
    _refused(peer, "anyid")
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure" and e.get("remote_id") == "%any",
                            what="auth.failure for the identity '%any'")
    assert "name_mismatch" in failure["reason"], failure
    assert gw.sas() == []
    assert not any(e["event"] == "auth.success" for e in gw.audit_events())

    peer.initiate(child="net", ike="honest")
    assert peer.wait_established("honest", "net").remote_id == GW_ID
    sas = gw.wait_sas(lambda sas: any(s["children"] for s in sas), what="m1's SAs on the gateway")
    assert [(s["name"], s["remote_id"]) for s in sas] == [("clients", M_ID)]  # pattern > %any
    successes = [e for e in gw.audit_events() if e["event"] == "auth.success"]
    assert [e.get("remote_id") for e in successes] == [M_ID]
    assert not any(e.get("remote_id") == PATTERN for e in gw.audit_events() if e["outcome"] == "success")


def test_cnsa_gateway_accepts_only_the_signature_schemes_its_profile_allows(
    netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory, tmp_path: Path,
) -> None:
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    pki = LabPki(tmp_path / "lab")
    gw = ikeguard_gateway(net.gateway.namespace, "gw", _gateway_config("cnsa-1"), pki.gateway_files())
    m, r = net["m"], net["r"]
    rsa_peer = _peer(strongswan_peer, r, "r1", pki, pki.r, [
        _conn(r, "pkcs1", R_ID, "r1.pem", auth="pubkey-sha384"),  # RSA PKCS#1 v1.5 with SHA-384
        _conn(r, "pss", R_ID, "r1.pem", auth="rsa/pss-sha384"),
    ])
    ec_peer = _peer(strongswan_peer, m, "m1", pki, pki.m, [
        _conn(m, "sha256", M_ID, "m1.pem", auth="ecdsa-sha256"),
        _conn(m, "sha384", M_ID, "m1.pem", auth="ecdsa-sha384"),
    ])

    # RSA PKCS#1 v1.5: SHA-384 was announced, the scheme is not allowed -> AUTHENTICATION_FAILED + reason
    _refused(rsa_peer, "pkcs1")
    rsa_peer.wait_for_log(AUTH_FAILED, timeout=10)
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure"
                            and e.get("remote_addr", "").startswith(r.address), what="r1's auth.failure")
    assert "rsa-sha384" in failure["reason"] and "not allowed by policy" in failure["reason"], failure
    assert gw.sas() == []
    rsa_peer.initiate(child="net", ike="pss")
    rsa_peer.wait_established("pss", "net")

    # ECDSA with SHA-256: the gateway announced SHA-384 only (RFC 7427 §4), so strongSwan has no hash to sign
    # ecdsa-sha256 with and gives up (before the fix SHA-256 was announced and the signature accepted)
    _refused(ec_peer, "sha256")
    log = ec_peer.log()
    assert "received supported signature hash algorithms: sha384\n" in log, "announced SHA-384 only"
    assert "no common hash algorithm found to create signature with ECDSA key" in log
    assert all(e.get("remote_id") != M_ID for e in gw.audit_events() if e["event"] == "auth.success")
    for failure in _failures(gw, m.address):
        reason = failure["reason"]
        assert "not allowed by policy" in reason or "did not announce" in reason, failure
    ec_peer.initiate(child="net", ike="sha384")
    ec_peer.wait_established("sha384", "net")
    gw.wait_sas(lambda sas: len([s for s in sas if s["children"]]) == 2, what="both peers' SAs")
    up = [s for s in gw.sas() if s["children"]]  # m1's abandoned IKE_SA_INIT stays half-open until timeout
    assert sorted(s["remote_id"] for s in up) == [M_ID, R_ID]
    successes = [e.get("remote_id") for e in gw.audit_events() if e["event"] == "auth.success"]
    assert sorted(successes) == [M_ID, R_ID]
