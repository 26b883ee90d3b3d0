"""Issue 18 Done-when 4 (SCEP, RFC 8894): the gateway obtains its certificate from a real SCEP CA
(micromdm ``scepserver``, Debian ``scep``) on first start with its RSA key in SoftHSM2 (the CSR and the
request are signed in the token, the answer's content key is decrypted in the token), a strongSwan peer
authenticates it with the SCEP CA as its trust anchor, the gateway renews by itself (RenewalReq signed with
the current certificate) and a new IKE SA authenticates with the renewed certificate while the IKE SA of
before stays up; a renewal with a wrong challenge password and then with the CA gone fails with an audit
warning naming the reason and is retried, and nothing is lost. A wrong challenge password at first start
stops ``ikeguard run`` with one line.

Why SCEP: Debian has no EST server, and ``openssl cmp``'s server mode is a mock answering with a
pre-configured certificate; ``scepserver`` is a real CA (docs/pki.md).

``scepserver`` only issues whole days (``-crtvalid 1``: notBefore now, notAfter now + 1 day), so the
renewal is driven by ``renew_at``: RENEW_AT of the 86400 s lifetime falls RENEW_AFTER seconds after the
issuance. The renewed certificate has the same key as the first, so which one the second IKE SA used is made
certain on the strongSwan side: before it, the test (as the CA's operator: ``scepserver`` publishes no
CRL) gives strongSwan a CRL of the SCEP CA revoking the first certificate. strongSwan then accepts the
gateway only with a certificate that is not revoked, and the only other certificate it can know for the
gateway's key is the one the gateway sends (a certificate pin, swanctl ``remote.certs``, cannot tell the two
apart: strongSwan verifies with any certificate of the same key)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.gateway_process import GatewayProcess, GatewayStartError
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CONN, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN
from tests.harness.scep import ScepServer, scep_server
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig
from tests.harness.tokens import Pkcs11Token, softhsm_token

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.date_sensitive]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
GW_ADDR = "192.0.2.1"
METRICS = "127.0.0.1:9471"
CHALLENGE = "enrol-me-7f3a"
LIFETIME = 86400  # scepserver -crtvalid 1
RENEW_AFTER = 15.0  # seconds after the issuance
RENEW_AT = RENEW_AFTER / LIFETIME


def _scep_toml(server: ScepServer) -> str:
    return f"""
[scep]
connection = "{CONN}"
url = "{server.url}"
ca_fingerprint = "{server.fingerprint()}"
challenge = "scep/challenge"
identifiers = ["{GW_ADDR}"]
renew_at = {RENEW_AT!r}
retry_min = "2s"
retry_max = "4s"
"""


def _gateway(tmp_path: Path, topo: Topology, ikeguard_gateway: GatewayFactory, server: ScepServer,
             token: Pkcs11Token, ca: Any, *, challenge: str = CHALLENGE,
             start: bool = True) -> GatewayProcess:
    def factory(namespace: Any, name: str, text: str, files: dict[str, bytes | str], **kw: Any) -> Any:
        return ikeguard_gateway(namespace, name, text + _scep_toml(server), files, env=token.env, **kw)

    return ikeguard_side(factory, topo.right, topo.left, spec=SideSpec(ikg_id=GW_ADDR), remote_addr="%any",
                         gateway_keys={"metrics": METRICS},
                         local=IkgLocal("pubkey", GW_ADDR, certs=["scep/gw.pem"], key=token.uri("ike")),
                         remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"], revocation="relaxed"),
                         authorities=[IkgAuthority("lab", cacert="pki/ca.pem")],
                         files={"token.pin": token.pin + "\n", "scep/challenge": challenge + "\n",
                                "pki/ca.pem": ca.cert_pem()},
                         name="gw", start=start)


def _leaf(gw: GatewayProcess) -> x509.Certificate:
    return x509.load_pem_x509_certificates((gw.workdir / "scep" / "gw.pem").read_bytes())[0]


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def test_gateway_enrols_and_renews_over_scep_with_its_key_in_softhsm_without_dropping_sas(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "rsa:3072")
    assert not info.extractable and info.sensitive
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab SCEP test client CA")
    client = tool.issue("client", ca, f"C=US, O=ss-lab, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
    topo = netns_topology("direct")
    with scep_server(tmp_path / "scep", topo.right.namespace, GW_ADDR, challenge=CHALLENGE) as server:
        peer = strongswan_side(strongswan_peer, topo.left, topo.right, spec=SideSpec(ikg_id=GW_ADDR),
                               local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                               remote=AuthConfig("pubkey", GW_ADDR, cacerts=["scep.pem"]),
                               name="strongswan", certs={"client": client.issued(ca)},
                               cacerts={"scep": server.ca()}, start=False)
        peer.start()
        gw = _gateway(tmp_path, topo, ikeguard_gateway, server, token, ca)
        # first start: enrolled (PKCSReq signed with a self-signed certificate of the token key)
        issued = gw.wait_audit(lambda e: e["event"] == "pki.issued", what="pki.issued")
        assert issued["details"]["renewal"] is False and issued["details"]["source"] == "scep"
        assert issued["details"]["ca"] == server.url
        old = _leaf(gw)
        assert format(old.serial_number, "x") == issued["cert_serial"]
        assert _spki(old) == info.public_pem  # the token's key
        assert old.issuer == server.ca().subject
        assert old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.IPAddress)[0].compressed == GW_ADDR
        peer.initiate(child="net", ike=CONN, timeout=15)
        before = [sa["spi_i"] for sa in gw.sas() if sa["state"] == "established"]
        assert len(before) == 1
        assert not [e for e in gw.audit_events() if e["event"] == "pki.issued" and e["details"]["renewal"]], \
            "renewed before the first IKE SA was up: raise RENEW_AFTER"
        # the renewal, by itself: a RenewalReq signed with the current certificate
        renewed = gw.wait_audit(lambda e: e["event"] == "pki.issued" and e["details"]["renewal"] is True,
                                timeout=RENEW_AFTER + 30, what="renewal")
        # the next renewal (RENEW_AFTER after this one) is made with a wrong challenge password (read from
        # its file at each request); the CA is stopped once that failed
        (gw.workdir / "scep" / "challenge").write_text("not-the-challenge\n")
        new = _leaf(gw)
        assert new.serial_number != old.serial_number and _spki(new) == info.public_pem
        assert format(new.serial_number, "x") == renewed["cert_serial"]
        assert "RenewalReq (17)" in server.log() and "PKCSReq (19)" in server.log()
        # a second IKE SA, after the CA's operator revoked the superseded certificate: strongSwan (with
        # that CRL) can only accept the renewed one
        peer.crls["scep"] = server.crl([old])
        first = peer.connections[0]
        peer.connections.append(replace(first, name="ikg2", dpd_delay="300s", keyingtries=1,
                                        children=[replace(c, name="net2") for c in first.children]))
        peer.reload()
        peer.initiate(child="net2", ike="ikg2", timeout=15)
        sas = {sa["spi_i"]: sa for sa in gw.sas() if sa["state"] == "established"}
        assert len(sas) == 2 and before[0] in sas  # the IKE SA of before the renewal is still up
        assert len([sa for sa in peer.list_sas() if sa.state == "ESTABLISHED"]) == 2
        log = peer.log()
        assert log.count(f"authentication of '{GW_ADDR}' with RSA_EMSA_PSS") == 2, log[-3000:]
        second = "\n".join(line for line in log.splitlines() if "<ikg2|" in line)
        assert "crl correctly signed by" in second and "certificate status is good" in second, second[-3000:]
        # a renewal refused for the challenge password, then the CA gone: audited warnings with the reason,
        # retried with backoff, nothing lost
        failed = gw.wait_audit(lambda e: e["event"] == "pki.renewal_failed", timeout=RENEW_AFTER + 30,
                               what="pki.renewal_failed")
        server.stop()
        assert failed["outcome"] == "failure" and failed["details"]["source"] == "scep"
        assert failed["reason"].startswith("SCEP renewal failed (1 in a row") and \
            "the SCEP CA refused the request: failInfo badRequest" in failed["reason"], failed["reason"]
        assert "invalid challenge" in server.log()
        gone = gw.wait_audit(lambda e: e["event"] == "pki.renewal_failed" and "GetCACaps" in e["reason"],
                             timeout=20, what="a retry with the CA gone")
        assert gone["details"]["failures"] >= 2
        assert gw.process is not None and gw.process.poll() is None
        assert set(before) <= {sa["spi_i"] for sa in gw.sas() if sa["state"] == "established"}
        status = gw.request("scep", action="status")
        assert status["failures"] >= 2 and "GetCACaps" in status["last_error"]
        scraped = topo.right.namespace.run("curl", "-sf", f"http://{METRICS}/metrics").stdout
        failing = [line for line in scraped.splitlines()
                   if line.startswith("ikeguard_scep_renewal_failures ")]
        assert failing and float(failing[0].split()[1]) >= 2, scraped[-2000:]
        assert CHALLENGE not in gw.log() and "not-the-challenge" not in gw.log() and token.pin not in gw.log()
    gw.stop()  # the HSM access log: the two answers' content keys were decrypted in the token
    events = gw.audit_events()
    assert len([e for e in events if e["event"] == "hsm.decrypt"]) == 2
    assert not [e for e in events if e["event"] == "hsm.error"]
    assert not [e for e in events if CHALLENGE in str(e) or "not-the-challenge" in str(e)]


def test_wrong_scep_challenge_stops_the_gateway_with_one_line(
    tmp_path: Path, netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    token.generate("ike", "rsa:2048")
    ca = PkiTool(tmp_path / "pki").self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab SCEP test client CA")
    topo = netns_topology("direct")
    with scep_server(tmp_path / "scep", topo.right.namespace, GW_ADDR, challenge=CHALLENGE) as server:
        gw = _gateway(tmp_path, topo, ikeguard_gateway, server, token, ca, challenge="not-the-challenge",
                      start=False)
        with pytest.raises(GatewayStartError) as failed:
            gw.start(timeout=20)
        assert "invalid challenge" in server.log()
    lines = [line for line in str(failed.value).splitlines() if "failInfo badRequest" in line]
    assert lines and lines[0].startswith("ikeguard run: [scep] cannot obtain the certificate"), \
        str(failed.value)
    assert "not-the-challenge" not in str(failed.value)
