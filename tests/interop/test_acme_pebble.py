"""Issue 18 Done-when 3 and 5 (ACME): the gateway obtains its certificate from a real pebble (RFC 8555,
http-01, an IP identifier RFC 8738) on first start, renews it by itself before it expires, and a strongSwan
peer's IKE SA made before the renewal stays up while a new one authenticates with the renewed certificate;
with pebble gone a renewal fails with an audit warning and a retry, and nothing is lost. A missing ACME
account key stops ``ikeguard run`` with one line.

pebble runs in the gateway's namespace (192.0.2.1:14000) and issues 20 s certificates; ``renew_at = 0.5``
renews after 10 s. The second IKE SA starts after the *first* certificate expired, so strongSwan can only
accept the renewed one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.tools.gateway_process import GatewayProcess, GatewayStartError
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CONN, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.pebble import Pebble, pebble
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig
from tests.harness.tokens import softhsm_token

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.date_sensitive]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
GW_ADDR = "192.0.2.1"
METRICS = "127.0.0.1:9469"
VALIDITY = 20


def _acme_toml(server: Pebble, *, account_key: str = "acme/account.key") -> str:
    return f"""
[acme]
connection = "{CONN}"
directory = "{server.directory}"
ca_bundle = "acme/pebble-listener-ca.pem"
account_key = "{account_key}"
identifiers = ["{GW_ADDR}"]
http01_listen = "{GW_ADDR}:{server.http_port}"
renew_at = 0.5
retry_min = "2s"
retry_max = "4s"
"""


def _account_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _gateway(tmp_path: Path, topo: Topology, ikeguard_gateway: GatewayFactory, server: Pebble, ca: Any,
             *, start: bool = True, account_key: str = "acme/account.key") -> GatewayProcess:
    def factory(namespace: Any, name: str, text: str, files: dict[str, bytes | str], **kw: Any) -> Any:
        acme = _acme_toml(server, account_key=account_key)
        return ikeguard_gateway(namespace, name, text + acme, files, **kw)

    return ikeguard_side(factory, topo.right, topo.left, spec=SideSpec(ikg_id=GW_ADDR), remote_addr="%any",
                         gateway_keys={"metrics": METRICS},
                         local=IkgLocal("pubkey", GW_ADDR, certs=["acme/gw.pem"], key="acme/gw.key"),
                         remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"], revocation="relaxed"),
                         authorities=[IkgAuthority("lab", cacert="pki/ca.pem")],
                         files={"acme/gw.key": (tmp_path / "pki" / "gw.key").read_bytes(),
                                "acme/account.key": _account_key(),
                                "acme/pebble-listener-ca.pem": server.tls_ca.read_bytes(),
                                "pki/ca.pem": ca.cert_pem()},
                         name="gw", start=start)


def _leaf(gw: GatewayProcess) -> x509.Certificate:
    return x509.load_pem_x509_certificates((gw.workdir / "acme" / "gw.pem").read_bytes())[0]


def test_gateway_obtains_and_renews_its_certificate_from_pebble_without_dropping_sas(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab ACME test CA")
    client = tool.issue("client", ca, f"C=US, O=ss-lab, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
    tool.key("gw")
    topo = netns_topology("direct")
    with pebble(tmp_path / "pebble", namespace=topo.right.namespace, host=GW_ADDR,
                validity=VALIDITY) as server:
        peer = strongswan_side(strongswan_peer, topo.left, topo.right, spec=SideSpec(ikg_id=GW_ADDR),
                               local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                               remote=AuthConfig("pubkey", GW_ADDR, cacerts=["pebble.pem"]),
                               name="strongswan",
                               certs={"client": client.issued(ca)},
                               cacerts={"pebble": x509.load_pem_x509_certificate(server.root_pem())},
                               start=False)
        first = peer.connections[0]
        peer.connections.append(replace(first, name="ikg2", dpd_delay="300s", keyingtries=1,  # its own IKE SA
                                        children=[replace(c, name="net2") for c in first.children]))
        peer.start()
        gw = _gateway(tmp_path, topo, ikeguard_gateway, server, ca)
        # first start: obtained from pebble before the plan was built
        issued = gw.wait_audit(lambda e: e["event"] == "pki.issued", what="pki.issued")
        assert issued["details"]["renewal"] is False and issued["details"]["source"] == "acme"
        old = _leaf(gw)
        assert format(old.serial_number, "x") == issued["cert_serial"]
        assert old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.IPAddress)[0].compressed == GW_ADDR
        peer.initiate(child="net", ike=CONN, timeout=15)
        before = [sa["spi_i"] for sa in gw.sas() if sa["state"] == "established"]
        assert len(before) == 1
        # the renewal: after half the lifetime, by itself
        renewed = gw.wait_audit(lambda e: e["event"] == "pki.issued" and e["details"]["renewal"] is True,
                                timeout=VALIDITY + 10, what="renewal")
        new = _leaf(gw)
        assert new.serial_number != old.serial_number
        assert format(new.serial_number, "x") == renewed["cert_serial"]
        # wait until the first certificate has expired: only the renewed one can authenticate us now
        time.sleep(max(0.0, old.not_valid_after_utc.timestamp() - time.time() + 1.5))
        peer.initiate(child="net2", ike="ikg2", timeout=15)
        sas = {sa["spi_i"]: sa for sa in gw.sas() if sa["state"] == "established"}
        assert len(sas) == 2 and before[0] in sas  # the IKE SA of before the renewal is still up
        assert len([sa for sa in peer.list_sas() if sa.state == "ESTABLISHED"]) == 2
        log = peer.log()
        done = f"authentication of '{GW_ADDR}' with ECDSA_WITH_SHA384_DER successful"
        assert log.count(done) == 2, log[-3000:]
        # pebble gone during a renewal: audited warning, retried with backoff, nothing lost
        server.stop()
        failed = gw.wait_audit(lambda e: e["event"] == "pki.renewal_failed", timeout=VALIDITY + 10,
                               what="pki.renewal_failed")
        assert failed["outcome"] == "failure" and "ACME" in failed["reason"]
        gw.wait_audit(lambda e: e["event"] == "pki.renewal_failed" and e["details"]["failures"] >= 2,
                      timeout=15, what="a retry")
        assert gw.process is not None and gw.process.poll() is None
        assert set(before) <= {sa["spi_i"] for sa in gw.sas() if sa["state"] == "established"}
        status = gw.request("acme", action="status")
        assert status["failures"] >= 2 and "ACME" in status["last_error"]
        scraped = topo.right.namespace.run("curl", "-sf", f"http://{METRICS}/metrics").stdout
        failing = [line for line in scraped.splitlines()
                   if line.startswith("ikeguard_acme_renewal_failures ")]
        assert failing and float(failing[0].split()[1]) >= 2, scraped[-2000:]


def test_missing_acme_account_key_stops_the_gateway_with_one_line(
    tmp_path: Path, netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory,
) -> None:
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab ACME test CA")
    tool.key("gw")
    topo = netns_topology("direct")
    with pebble(tmp_path / "pebble", namespace=topo.right.namespace, host=GW_ADDR) as server:
        gw = _gateway(tmp_path, topo, ikeguard_gateway, server, ca, start=False,
                      account_key="acme/absent.key")
        with pytest.raises(GatewayStartError) as failed:
            gw.start(timeout=20)
    lines = [line for line in str(failed.value).splitlines() if "ACME account key missing" in line]
    assert lines and lines[0].startswith("ikeguard run: [acme] cannot obtain the certificate"), \
        str(failed.value)


def test_csr_signed_in_the_token_gets_a_certificate_from_pebble(tmp_path: Path) -> None:
    """The key stays in SoftHSM2: the CSR is signed by the token (CKM_ECDSA), pebble issues for its key."""
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    (tmp_path / "account.key").write_bytes(_account_key())
    with pebble(tmp_path / "pebble") as server:
        script = (
            "from pathlib import Path\n"
            "from ikeguard.crypto.pkcs11_key import open_token_key\n"
            "from ikeguard.pki.acme_client import AcmeOrder, obtain_certificate\n"
            f"k = open_token_key({token.uri('ike', pin_source='env:PIN')!r})\n"
            f"order = AcmeOrder({server.directory!r}, Path({str(tmp_path / 'account.key')!r}),"
            f" ('127.0.0.1',), ('127.0.0.1', {server.http_port}), Path({str(server.tls_ca)!r}))\n"
            "chain = obtain_certificate(order, k)\n"
            "import sys; from cryptography.hazmat.primitives import serialization as s\n"
            "sys.stdout.buffer.write(chain[0].public_bytes(s.Encoding.PEM))\n"
        )
        env = {**token.env, "PIN": token.pin, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120,
                             check=False)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    cert = x509.load_pem_x509_certificate(out.stdout)
    assert cert.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == info.public_pem
    assert "Pebble Intermediate CA" in cert.issuer.rfc4514_string()
