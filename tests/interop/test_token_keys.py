"""Issue 18 item 1: the gateway's IKE private key in a PKCS#11 token (RFC 7512 URI in ``local.key``),
IKE_AUTH signed on the token (RFC 7427 Digital Signature, ECDSA P-384), against a strongSwan initiator.

The key is generated inside SoftHSM2 as an operator does (python-pkcs11, CKA_EXTRACTABLE false,
CKA_SENSITIVE true); its certificate is issued by strongSwan's `pki --issue --type pub` from the token's
public key. Reading the private value from the token is refused, and ikeguard's key object refuses export.
Wrong PIN and a missing token stop `ikeguard run` at start with one line naming the problem, never the PIN.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess, GatewayStartError
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CONN, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.interop_scenarios import Pair, PairSpec
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig
from tests.harness.tokens import Pkcs11Token, softhsm_token, swtpm_token, tpm_add_key
from tests.harness.workers import worker_pids

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def _pair(tmp_path: Path, token: Pkcs11Token, public_pem: bytes, netns_topology: Callable[..., Topology],
          strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory, *, pin: str | None = None,
          uri: str | None = None, start: bool = True, second_conn: bool = False,
          role: str = "responder") -> Pair:
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab token CA")
    gw_cert = tool.issue_public("gw", ca, f"C=US, O=ss-lab, CN={GW_FQDN}", public_pem,
                                sans=[GW_FQDN, "192.0.2.1"])
    client = tool.issue("client", ca, f"C=US, O=ss-lab, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, left, right, spec=SideSpec(),
                           local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                           remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]), name="strongswan",
                           certs={"client": client.issued(ca)}, cacerts={"ca": ca.cert}, start=False)
    if second_conn:  # a second strongSwan connection to the same gateway: its own, second IKE SA
        first = peer.connections[0]
        peer.connections.append(replace(first, name="ikg2", dpd_delay="300s", keyingtries=1,
                                        children=[replace(c, name="net2") for c in first.children]))
    peer.start()

    def gateway(*args: Any, **kwargs: Any) -> GatewayProcess:
        return ikeguard_gateway(*args, env=token.env, **kwargs)

    gw = ikeguard_side(gateway, right, left, spec=SideSpec(),
                       remote_addr="%any" if role == "responder" else None,
                       local=IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key=uri or token.uri("ike")),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"], revocation="relaxed"),
                       authorities=[IkgAuthority("lab", cacert="pki/ca.pem")],
                       files={"pki/gw.pem": gw_cert.read_bytes(), "pki/ca.pem": ca.cert_pem(),
                              "token.pin": (pin if pin is not None else token.pin) + "\n"},
                       name="gw", start=start)
    return Pair(PairSpec(role, auth="ecdsa"), topo, gw, peer)


def test_softhsm_p384_key_signs_ike_auth_for_strongswan_and_cannot_be_exported(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    assert not info.extractable and info.sensitive
    assert info.export == "AttributeSensitive"  # the token refuses to hand out the private value
    pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway)
    for _ in range(2):  # two IKE SAs: the second reuses the pooled, logged-in session
        pair.initiate()
        ss, ikg = pair.settled()
        assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
        assert ikg["state"] == "established"
        pair.peer.terminate(ike=CONN)
        pair.gw.wait_sas(lambda sas: not sas, timeout=10)
    log = pair.peer.log()
    # strongSwan verified ikeguard's token-made signature with the certificate's P-384 key (RFC 7427)
    assert f"authentication of '{GW_FQDN}' with ECDSA-384 signature successful" in log or \
        f"authentication of '{GW_FQDN}' with ECDSA_WITH_SHA384_DER successful" in log, log[-3000:]
    assert token.pin not in pair.gw.log()
    # the HSM access log: one login at start per process (`workers`, one per core by default), the two
    # signatures aggregated at stop
    processes = max(1, len(worker_pids(pair.gw.log())))
    pair.gw.stop()
    events = pair.gw.audit_events()
    logins = [e for e in events if e["event"] == "hsm.login"]
    signs = [e for e in events if e["event"] == "hsm.sign"]
    assert len(logins) == processes
    assert {e["details"]["key"] for e in logins} == {"pkcs11:token=ikeguard;object=ike"}
    assert sum(e["details"]["count"] for e in signs) == 2
    assert not [e for e in events if e["event"] == "hsm.error"]


@pytest.mark.parametrize(("kind", "logged"),
                         [("rsa:3072", "RSA_EMSA_PSS"), ("ec:secp256r1", "ECDSA_WITH_SHA256_DER")])
def test_softhsm_rsa_pss_and_p256_keys_sign_ike_auth_for_strongswan(
    kind: str, logged: str, tmp_path: Path, netns_topology: Callable[..., Topology],
    strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    """RSA keys sign with RSASSA-PSS (CKM_RSA_PKCS_PSS, RFC 7427 / RFC 8247), P-256 with ECDSA-SHA256."""
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", kind)
    assert not info.extractable and info.sensitive
    pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway)
    pair.initiate()
    ss, _ = pair.settled()
    assert ss.remote_id == GW_FQDN
    lines = [line for line in pair.peer.log().splitlines() if f"authentication of '{GW_FQDN}' with" in line]
    assert lines and logged in lines[0] and lines[0].endswith("successful"), lines


def test_softhsm_key_signs_off_the_loop_when_ikeguard_initiates(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    """As initiator the token signs too (in a worker thread: SignatureJob before the IKE_AUTH request)."""
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway,
                 role="initiator")
    pair.initiate()
    ss, _ = pair.settled()
    assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
    assert f"authentication of '{GW_FQDN}' with ECDSA_WITH_SHA384_DER successful" in pair.peer.log()
    pair.gw.stop()
    signs = [e for e in pair.gw.audit_events() if e["event"] == "hsm.sign"]
    assert sum(e["details"]["count"] for e in signs) == 1


def test_tpm_p384_key_through_tpm2_pkcs11_signs_ike_auth_for_strongswan(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    with swtpm_token(tmp_path / "tpm") as token:
        info = tpm_add_key(token, "ike", "ecc384")
        assert not info.extractable and info.sensitive
        assert info.export != "allowed"  # tpm2-pkcs11 has no clear private value to give
        pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway)
        pair.initiate()
        ss, ikg = pair.settled()
        assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
        assert ikg["state"] == "established"
        assert f"authentication of '{GW_FQDN}' with ECDSA_WITH_SHA384_DER successful" in pair.peer.log()
        assert token.pin not in pair.gw.log()
        pair.gw.stop()  # before the TPM goes away


def test_token_gone_at_run_time_refuses_new_ike_sas_and_keeps_established_ones(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway,
                 second_conn=True)
    pair.initiate()
    pair.settled()
    first = [sa for sa in pair.gw.sas() if sa["state"] == "established"]
    assert len(first) == 1
    tokens = tmp_path / "hsm" / "tokens"
    tokens.rename(tmp_path / "hsm" / "removed")  # the token's objects are gone (an HSM unplugged)
    with pytest.raises(StrongSwanError):
        pair.peer.initiate(child="net2", ike="ikg2", timeout=6)
    record = pair.gw.wait_audit(lambda e: "PKCS#11" in str(e.get("reason", "")), what="token failure")
    assert (record["event"], record["outcome"]) == ("auth.failure", "failure")
    assert "received AUTHENTICATION_FAILED notify error" in pair.peer.log()
    assert "cannot sign AUTH: PKCS#11 signature failed on pkcs11:token=ikeguard;object=ike" \
        in record["reason"]
    assert token.pin not in str(record)
    # the IKE SA made before the token went away is untouched, on both sides
    still = [sa for sa in pair.gw.sas() if sa["state"] == "established"]
    assert [sa["spi_i"] for sa in still] == [sa["spi_i"] for sa in first]
    assert any(sa.state == "ESTABLISHED" for sa in pair.peer.list_sas(CONN))
    pair.gw.stop()
    errors = [e for e in pair.gw.audit_events() if e["event"] == "hsm.error"]
    assert errors and errors[0]["outcome"] == "failure"
    assert errors[0]["details"]["error"] in ("ObjectHandleInvalid", "NoSuchKey")  # the cached handle, or none


def test_ikeguard_token_key_object_refuses_export(tmp_path: Path) -> None:
    token = softhsm_token(tmp_path / "hsm")
    token.generate("ike", "ec:secp256r1")
    script = (
        "import os\n"
        "from cryptography.hazmat.primitives import serialization as s\n"
        "from ikeguard.crypto.pkcs11_key import open_token_key\n"
        f"k = open_token_key({token.uri('ike', pin_source='env:PIN')!r})\n"
        "print(k.curve.name)\n"
        "try:\n"
        "    k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())\n"
        "except Exception as exc:\n"
        "    print('refused:', exc)\n"
        "print(repr(k))\n"
    )
    env = {**token.env, "PIN": token.pin, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert "secp256r1" in out
    assert "refused: the private key is in a PKCS#11 token and cannot be exported" in out
    assert token.pin not in out


@pytest.mark.parametrize("problem", ["wrong-pin", "missing-token", "pin-value"])
def test_token_problems_stop_the_gateway_at_start_with_one_line(
    problem: str, tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    pin = "999999" if problem == "wrong-pin" else None
    uri = {"missing-token": token.uri("ike").replace(f"token={token.label}", "token=absent"),
           "pin-value": token.uri("ike", pin_source="file:token.pin") + "&pin-value=246810"}.get(problem)
    pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway,
                 pin=pin, uri=uri, start=False)
    with pytest.raises(GatewayStartError) as failed:
        pair.gw.start(timeout=20)
    text = str(failed.value)
    expected = {"wrong-pin": "PKCS#11 login failed: wrong PIN",
                "missing-token": "PKCS#11 token not found: pkcs11:token=absent;object=ike",
                "pin-value": "pin-value is not allowed"}[problem]
    lines = [line for line in text.splitlines() if expected in line]
    assert lines, text
    assert "999999" not in text and "246810" not in text  # no PIN in the error


def test_token_key_signs_from_several_threads_with_one_login(tmp_path: Path) -> None:
    """Concurrent signers share one logged-in session; calls are serialised (the module was initialised
    without OS locking), so every signature verifies and the token saw one login."""
    token = softhsm_token(tmp_path / "hsm")
    token.generate("ike", "ec:secp384r1")
    script = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from ikeguard.crypto.pkcs11_key import open_token_key\n"
        "from ikeguard.crypto.signatures import SignatureScheme as S, sign_auth, verify_auth\n"
        f"k = open_token_key({token.uri('ike', pin_source='env:PIN')!r})\n"
        "def one(i):\n"
        "    data = b'octets %d' % i\n"
        "    return verify_auth(k.public_key(), 14, sign_auth(k, data, 14, S.ECDSA_SHA384), data)\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    done = list(pool.map(one, range(200)))\n"
        "print(len(done), all(s is S.ECDSA_SHA384 for s in done), k._ops.pool.logins)\n"
    )
    env = {**token.env, "PIN": token.pin, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert out.split() == ["200", "True", "1"]
