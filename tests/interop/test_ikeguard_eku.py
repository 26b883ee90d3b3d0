"""Issue 13 item 3: certificates with the extended key usage operators' tools and CAs put in them, between
`ikeguard run` and strongSwan in both roles (RFC 4945 §5.1.3.12, RFC 5280 §4.2.1.12).

Certificates are made the way operators make them (tests/harness/pki_tool.py): strongSwan's `pki`
(`pki --gen`, `pki --self --ca`, `pki --pub | pki --issue --flag serverAuth --flag clientAuth`), the OpenSSL
CLI (`openssl req -x509`, `openssl x509 -req -extfile` with an `extendedKeyUsage = ...` line) and a Windows
CA's template (RSA, keyUsage digitalSignature + keyEncipherment, EKU serverAuth resp. clientAuth). Both
gateways' certificates carry the EKU in every scenario, so each side validates one.

(b) non-critical serverAuth/clientAuth without ipsecIKE: accepted by default (strongSwan accepts ikeguard's
    certificate, ikeguard strongSwan's), tunnels up in both roles;
(c) a critical EKU without ipsecIKE/anyExtendedKeyUsage: ikeguard refuses it with the RFC's reason, whether
    it is responder (strongSwan gets AUTHENTICATION_FAILED) or initiator;
    and `remote.eku = "strict"` refuses (b)'s certificates with a reason naming the option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ikeguard.control.client import ControlError
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CHILD, CONN, address, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.interop_scenarios import Pair, PairSpec
from tests.harness.pki_tool import (
    WINDOWS_CLIENT_TEMPLATE,
    WINDOWS_GATEWAY_TEMPLATE,
    OpensslCa,
    PkiTool,
    ToolCert,
)
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
GW_SANS = [GW_FQDN, "192.0.2.1"]
CLIENT_SANS = [CLIENT_FQDN, "192.0.2.2"]
TLS = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
OPENSSL_TLS = ("keyUsage = critical, digitalSignature", "extendedKeyUsage = serverAuth, clientAuth")
OPENSSL_CRITICAL = ("keyUsage = critical, digitalSignature",
                    "extendedKeyUsage = critical, serverAuth, clientAuth")
CRITICAL_REASON = ("critical extendedKeyUsage [clientAuth, serverAuth] has neither ipsecIKE nor "
                   "anyExtendedKeyUsage")
AUTH_FAILED = "received AUTHENTICATION_FAILED notify error"


@dataclass(frozen=True)
class Credentials:
    """A CA, ikeguard's certificate (gw) and strongSwan's (client), as the tool wrote them."""

    ca: ToolCert
    gw: ToolCert
    client: ToolCert


def make(kind: str, directory: Path) -> Credentials:
    """pki | openssl | windows: both leaves with the usual TLS EKU; critical: strongSwan's EKU critical."""
    if kind == "pki":
        tool = PkiTool(directory)
        ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab pki CA")
        flags = ["serverAuth", "clientAuth"]  # what `pki --issue --flag serverAuth --flag clientAuth` makes
        return Credentials(ca, tool.issue("gw", ca, f"C=US, O=ss-lab, CN={GW_FQDN}", sans=GW_SANS,
                                          flags=flags),
                           tool.issue("client", ca, f"C=US, O=ss-lab, CN={CLIENT_FQDN}", sans=CLIENT_SANS,
                                      flags=flags))
    if kind == "windows":
        win = OpensslCa(directory, key="rsa:3072", digest="sha256")
        ca = win.self_signed_ca("ca", "/DC=example/DC=ss-lab/CN=ss-lab Issuing CA")
        return Credentials(ca, win.issue("gw", ca, f"/CN={GW_FQDN}", sans=GW_SANS,
                                         extensions=WINDOWS_GATEWAY_TEMPLATE),
                           win.issue("client", ca, f"/CN={CLIENT_FQDN}", sans=CLIENT_SANS,
                                     extensions=WINDOWS_CLIENT_TEMPLATE))
    ossl = OpensslCa(directory)
    ca = ossl.self_signed_ca("ca", "/O=ss-lab/CN=ss-lab OpenSSL CA")
    client_ext = OPENSSL_CRITICAL if kind == "critical" else OPENSSL_TLS
    return Credentials(ca, ossl.issue("gw", ca, f"/O=ss-lab/CN={GW_FQDN}", sans=GW_SANS,
                                      extensions=OPENSSL_TLS),
                       ossl.issue("client", ca, f"/O=ss-lab/CN={CLIENT_FQDN}", sans=CLIENT_SANS,
                                  extensions=client_ext))


def eku(cert: ToolCert) -> tuple[set[x509.ObjectIdentifier], bool]:
    """The certificate's EKU purposes and whether the extension is critical."""
    ext = cert.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    return set(ext.value), ext.critical


def start(netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
          ikeguard_gateway: GatewayFactory, creds: Credentials, role: str,
          remote: dict[str, Any] | None = None) -> Pair:
    """strongSwan (left) and `ikeguard run` (right) with mirrored certificate connections; nothing initiated.
    ``remote``: extra keys of ikeguard's ``connections.ikg.remote`` (e.g. ``eku = "strict"``)."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, left, right, spec=SideSpec(),
                           local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                           remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]), name="strongswan",
                           certs={"client": creds.client.issued(creds.ca)}, cacerts={"ca": creds.ca.cert})
    gw = ikeguard_side(ikeguard_gateway, right, left, spec=SideSpec(), local_addrs=[address(right)],
                       local=IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"], revocation="relaxed",
                                        extra=remote or {}),
                       authorities=[IkgAuthority("lab", cacert="pki/ca.pem")],
                       files={"pki/gw.pem": creds.gw.cert_pem(), "pki/gw.key": creds.gw.key_pem(),
                              "pki/ca.pem": creds.ca.cert_pem()}, name="gw")
    return Pair(PairSpec(role, auth="ecdsa"), topo, gw, peer)


def refused(pair: Pair) -> dict[str, Any]:
    """Initiate from the spec's side, expect it to fail, return ikeguard's cert.rejected record."""
    if pair.spec.role == "responder":
        with pytest.raises(StrongSwanError):
            pair.peer.initiate(child=CHILD, ike=CONN, timeout=10)
        assert AUTH_FAILED in pair.peer.log()  # RFC 7296 §2.21.2: ikeguard told strongSwan why
    else:
        with pytest.raises(ControlError):
            pair.gw.request("initiate", conn=CONN, child=CHILD, timeout=10)
    record = pair.gw.wait_audit(lambda e: e["event"] == "cert.rejected", what="cert.rejected")
    assert record["outcome"] == "failure" and record["reason"].startswith("eku: ")
    assert f"CN={CLIENT_FQDN}" in record["reason"]
    assert not any(sa["state"] == "established" for sa in pair.gw.sas())
    return record


SCENARIOS = [(kind, role) for kind in ("pki", "openssl", "windows") for role in ("initiator", "responder")]


@pytest.mark.parametrize(("kind", "role"), SCENARIOS, ids=[f"{k}-ikeguard-{r}" for k, r in SCENARIOS])
def test_tls_eku_certificates_work_in_both_roles(
    kind: str, role: str, tmp_path: Path, netns_topology: Callable[..., Topology],
    strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    creds = make(kind, tmp_path / "pki")
    gw_ekus, gw_critical = eku(creds.gw)
    client_ekus, client_critical = eku(creds.client)
    assert not gw_critical and not client_critical  # non-critical, as the tools make them by default
    assert ExtendedKeyUsageOID.IPSEC_IKE not in gw_ekus | client_ekus
    if kind == "windows":
        assert gw_ekus == {ExtendedKeyUsageOID.SERVER_AUTH}
        assert client_ekus == {ExtendedKeyUsageOID.CLIENT_AUTH}
        usage = creds.gw.cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and usage.key_encipherment
    else:
        assert gw_ekus == client_ekus == TLS
    pair = start(netns_topology, strongswan_peer, ikeguard_gateway, creds, role)
    pair.initiate()
    ss, ikg = pair.settled()
    assert ss.initiator is (role == "responder")
    assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
    assert (ikg["local_id"], ikg["remote_id"]) == (GW_FQDN, CLIENT_FQDN)
    # each side validated the other's TLS-EKU certificate: strongSwan ikeguard's, ikeguard strongSwan's
    assert f"authentication of '{GW_FQDN}' with" in pair.peer.log()
    validated = pair.gw.wait_audit(lambda e: e["event"] == "cert.validated", 5)
    assert validated["outcome"] == "success"
    assert not [e for e in pair.gw.audit_events() if e["event"] == "cert.rejected"]


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_critical_eku_without_ipsec_ike_is_refused_with_the_rfc_reason(
    role: str, tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    creds = make("critical", tmp_path / "pki")
    assert eku(creds.client) == (TLS, True)
    pair = start(netns_topology, strongswan_peer, ikeguard_gateway, creds, role)
    record = refused(pair)
    assert CRITICAL_REASON in record["reason"] and "RFC 4945 §5.1.3.12" in record["reason"]


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_strict_option_refuses_tls_eku_certificates_naming_itself(
    role: str, tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    creds = make("pki", tmp_path / "pki")
    pair = start(netns_topology, strongswan_peer, ikeguard_gateway, creds, role, remote={"eku": "strict"})
    record = refused(pair)
    assert "non-critical extendedKeyUsage [clientAuth, serverAuth] has neither ipsecIKE nor " \
           "anyExtendedKeyUsage" in record["reason"]
    assert 'remote.eku = "strict"' in record["reason"] and "RFC 4945 §5.1.3.12" in record["reason"]
