"""Issue 18 item 1, the other key types: a P-256 ECDSA key and an RSA-3072 key generated non-extractable in
SoftHSM2 sign the responder's IKE_AUTH (RFC 7427 Digital Signature; RSA as RSASSA-PSS, RFC 8247 §3.2) for a
strongSwan 5.9.8 initiator, which verifies the signature with the public key of the certificate issued for
the token's key. The P-384 case (and the TPM) is in test_token_keys.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.tokens import softhsm_token
from tests.interop.test_token_keys import _pair

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


@pytest.mark.parametrize(("kind", "expected"), [
    ("ec:secp256r1", "ECDSA_WITH_SHA256_DER"),
    ("rsa:3072", "RSA_EMSA_PSS_SHA2_256_SALT_32"),  # PSS, not PKCS#1 v1.5 (strongSwan: RSA_EMSA_PKCS1_...)
])
def test_softhsm_key_signs_ike_auth_for_strongswan(
    kind: str, expected: str, tmp_path: Path, netns_topology: Callable[..., Topology],
    strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", kind)
    assert not info.extractable and info.sensitive
    assert info.export == "AttributeSensitive"  # reading CKA_VALUE / CKA_PRIVATE_EXPONENT is refused
    pair = _pair(tmp_path, token, info.public_pem, netns_topology, strongswan_peer, ikeguard_gateway)
    pair.initiate()
    ss, ikg = pair.settled()
    assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
    assert ikg["state"] == "established"
    log = pair.peer.log()
    lines = [line for line in log.splitlines() if f"authentication of '{GW_FQDN}' with" in line]
    assert lines and expected in lines[-1] and "successful" in lines[-1], log[-3000:]
    assert token.pin not in pair.gw.log()
