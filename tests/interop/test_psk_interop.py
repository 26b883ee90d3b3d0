"""Issue 13 item 2: `0x` (hex) and `0s` (base64) pre-shared keys copied verbatim from a strongSwan
``swanctl.conf`` into the ikeguard config authenticate against that strongSwan, in both roles.

strongSwan decodes such a secret to binary (swanctl ``load_secret``: ``0x`` -> ``chunk_from_hex``, ``0s`` ->
``chunk_from_base64``, also inside double quotes). The keys are made as operators make them (``openssl rand
-hex 32`` / ``-base64 32``); the value is read back from the ``secret = ...`` line of the swanctl.conf
charon loaded and pasted unchanged into ikeguard's ``secret = "..."`` (inline) or ``secret_file`` (the
quoted case pastes the quotes too). Before the fix ikeguard used the text itself as the key and every
case failed with ``auth.failure ... pre-shared key mismatch`` on one side or the other.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
)
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
SECRET_LINE = re.compile(r"^\s*secret = (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    """How the key is made and written, and which role ikeguard plays."""

    openssl: str  # -hex | -base64
    prefix: str  # 0x | 0s
    ikeguard: str  # initiator | responder
    storage: str  # secret_file | secret (inline)
    quoted: bool = False  # swanctl.conf has secret = "0s..." (and the file gets the quotes too)


CASES = {
    "0x-ikeguard-responder-secret_file": Case("-hex", "0x", "responder", "secret_file"),
    "0x-ikeguard-initiator-inline": Case("-hex", "0x", "initiator", "secret"),
    "0s-ikeguard-responder-inline": Case("-base64", "0s", "responder", "secret"),
    "0s-quoted-ikeguard-initiator-secret_file": Case("-base64", "0s", "initiator", "secret_file",
                                                     quoted=True),
}


def _openssl_rand(kind: str) -> str:
    return subprocess.run(["openssl", "rand", kind, "32"], capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()


def _strongswan(strongswan_peer: PeerFactory, topo: Topology, case: Case, key: str) -> StrongSwanPeer:
    left, right = topo.left, topo.right
    conn = ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)],
        remote_addrs=["%any" if case.ikeguard == "initiator" else str(right.address)],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig("net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])
    peer = strongswan_peer(left.namespace, "ss", connections=[conn],
                           psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=key)])
    if case.quoted:  # as an operator may write it; strongSwan's parser unquotes before looking at 0s
        path = peer.swanctl_dir / "swanctl.conf"
        path.write_text(path.read_text().replace(f"secret = {key}", f'secret = "{key}"'))
        peer.load_all()
    return peer


def _secret_line(peer: StrongSwanPeer) -> str:
    """The value of the `secret = ...` line in the swanctl.conf charon loaded, exactly as written."""
    [value] = SECRET_LINE.findall((peer.swanctl_dir / "swanctl.conf").read_text())
    return str(value).strip()


def _ikeguard(ikeguard_gateway: GatewayFactory, topo: Topology, case: Case, pasted: str) -> GatewayProcess:
    left, right = topo.left, topo.right
    initiator = case.ikeguard == "initiator"
    connection = IkgConnection(
        name="ikg", local_addrs=[str(right.address)],
        remote_addrs=[str(left.address) if initiator else "%any"], proposals=[IKE_PROPOSAL],
        local=IkgLocal("psk", GW_FQDN), remote=IkgRemote("psk", CLIENT_FQDN),
        children=[IkgChild("net", local_ts=[str(right.subnet)], remote_ts=[str(left.subnet)],
                           esp_proposals=[ESP_PROPOSAL], start_action="start" if initiator else None)])
    in_file = case.storage == "secret_file"
    secret = IkgSecret("client", [GW_FQDN, CLIENT_FQDN], pasted, in_file=in_file)
    text = gateway_toml([connection], listen=[str(right.address)], secrets=[secret],
                        gateway={"retransmit_timeout": 1.0, "retransmit_tries": 3})
    if in_file:
        assert f'secret_file = "{secret.file}"' in text
    else:
        assert f'secret = "{pasted}"' in text  # the swanctl value, pasted into a TOML string
    files = {secret.file: pasted + "\n"} if in_file else {}
    return ikeguard_gateway(right.namespace, "gw", text, files)


@pytest.mark.parametrize("name", list(CASES))
def test_binary_psk_copied_from_swanctl_conf_authenticates_both_ways(
    name: str, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    case = CASES[name]
    topo = netns_topology("direct")
    key = case.prefix + _openssl_rand(case.openssl)
    peer = _strongswan(strongswan_peer, topo, case, key)
    pasted = _secret_line(peer)
    assert pasted == (f'"{key}"' if case.quoted else key)
    gw = _ikeguard(ikeguard_gateway, topo, case, pasted if case.storage == "secret_file" else key)

    if case.ikeguard == "responder":
        peer.initiate(child="net", ike="ikg")
    ss_sa = peer.wait_established("ikg", "net", timeout=15)
    assert ss_sa.initiator is (case.ikeguard == "responder") and ss_sa.remote_id == GW_FQDN
    [sa] = gw.wait_sas(lambda sas: len(sas) == 1 and sas[0]["children"] and
                       sas[0]["children"][0]["state"] == "installed", timeout=10, what="the SA")
    assert sa["remote_id"] == CLIENT_FQDN and sa["initiator"] is (case.ikeguard == "initiator")
    assert sa["spi_i"] == f"{ss_sa.initiator_spi:016x}" and sa["spi_r"] == f"{ss_sa.responder_spi:016x}"
    child = ss_sa.child("net")
    assert (sa["children"][0]["spi_in"], sa["children"][0]["spi_out"]) == (f"{child.spi_out:08x}",
                                                                            f"{child.spi_in:08x}")
    gw.wait_audit(lambda e: e["event"] == "auth.success" and e.get("remote_id") == CLIENT_FQDN)
    events = gw.audit_events()
    assert not [e for e in events if e["event"] == "auth.failure"], events
    body = key[2:]
    assert body not in gw.log() and body not in json.dumps(events)  # the key never in logs or audit
