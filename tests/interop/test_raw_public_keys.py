"""Issue 18, raw public keys (RFC 7670): ikeguard and strongSwan 5.9 authenticate each other with pinned
public keys and no certificate, in both roles; a key that is not the pinned one is refused with
AUTHENTICATION_FAILED and an audit reason.

Keys are made as operators make them: ``pki --gen --type ecdsa --size 384`` and ``pki --pub --outform pem``.
strongSwan pins ikeguard's key with ``remote.pubkeys`` (swanctl/pubkey/) and presents its own with
``local.pubkeys``; ikeguard pins strongSwan's with ``remote.pubkeys`` and presents its own with
``local.pubkeys`` (it sends it in a CERT payload of encoding 15; strongSwan 5.9 sends no CERT payload for a
raw key, so ikeguard tries its pinned key file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgLocal, IkgRemote
from tests.harness.interop_pair import CONN, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.interop_scenarios import Pair, PairSpec
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def _pair(tmp_path: Path, role: str, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
          ikeguard_gateway: GatewayFactory, *, wrong_pin: bool = False) -> Pair:
    tool = PkiTool(tmp_path / "pki")
    gw_key, gw_pub = tool.key("gw"), tool.public("gw")
    tool.key("client")
    client_pub = tool.public("client")
    pinned_client = tool.public(tool.key("stranger").stem) if wrong_pin else client_pub
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, left, right, spec=SideSpec(),
                           local=AuthConfig("pubkey", CLIENT_FQDN, extra={"pubkeys": ["client.pub"]}),
                           remote=AuthConfig("pubkey", GW_FQDN, extra={"pubkeys": ["gw.pub"]}),
                           name="strongswan", start=False)
    for sub, name, data in (("pubkey", "client.pub", client_pub.read_bytes()),
                            ("pubkey", "gw.pub", gw_pub.read_bytes()),
                            ("private", "client.pem", (tool.directory / "client.key").read_bytes())):
        (peer.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        (peer.swanctl_dir / sub / name).write_bytes(data)
    (peer.swanctl_dir / "private" / "client.pem").chmod(0o600)
    peer.start()
    gw = ikeguard_side(ikeguard_gateway, right, left, spec=SideSpec(),
                       remote_addr="%any" if role == "responder" else None,
                       local=IkgLocal("pubkey", GW_FQDN, key="keys/gw.key",
                                      extra={"pubkeys": ["keys/gw.pub"]}),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, extra={"pubkeys": ["keys/client.pub"]}),
                       files={"keys/gw.key": gw_key.read_bytes(), "keys/gw.pub": gw_pub.read_bytes(),
                              "keys/client.pub": pinned_client.read_bytes()},
                       name="gw")
    return Pair(PairSpec(role, auth="ecdsa"), topo, gw, peer)


def _auth_success(events: list[dict[str, Any]]) -> dict[str, Any]:
    found = [e for e in events if e["event"] == "auth.success"]
    assert found, [e["event"] for e in events]
    return found[0]


@pytest.mark.parametrize("role", ["responder", "initiator"])
def test_raw_public_keys_with_strongswan(
    role: str, tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    pair = _pair(tmp_path, role, netns_topology, strongswan_peer, ikeguard_gateway)
    pair.initiate()
    ss, ikg = pair.settled()
    assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
    assert ikg["state"] == "established"
    log = pair.peer.log()
    # strongSwan verified ikeguard's signature with the pinned raw key (no certificate anywhere)
    lines = [line for line in log.splitlines() if f"authentication of '{GW_FQDN}' with" in line]
    assert lines and lines[0].endswith("successful"), log[-3000:]
    assert "received end entity cert" not in log and "sending end entity cert" not in log
    # on the wire: strongSwan 5.9.8 sends no CERT payload for its raw key (asked by our CERTREQ, it tries
    # and fails) and skips ikeguard's encoding-15 CERT payload; it finds ikeguard's key by the IKE identity
    assert "embedding PUBKEY certificate in payload failed" in log or role == "initiator"
    assert "certificate encoding (15) not supported" in log
    record = _auth_success(pair.gw.audit_events())
    assert record["details"]["raw_public_key"].startswith("sha256:")


def test_strongswan_key_not_the_pinned_one_is_refused(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    pair = _pair(tmp_path, "responder", netns_topology, strongswan_peer, ikeguard_gateway, wrong_pin=True)
    with pytest.raises(StrongSwanError):
        pair.peer.initiate(child="net", ike=CONN, timeout=6)
    record = pair.gw.wait_audit(lambda e: e["event"] == "auth.failure", what="auth.failure")
    assert "raw public key rejected: AUTH signature verifies with no pinned key" in record["reason"], record
    assert "received AUTHENTICATION_FAILED notify error" in pair.peer.log()
    assert pair.gw.sas() == []
