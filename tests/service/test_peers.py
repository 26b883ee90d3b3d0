"""Peer inventory commands on a live plan: the engine's %peer lookup changes at once, the file is rewritten,
every change is audited with operator and ticket, and disable deletes only that peer's SAs."""

from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Any

import pytest

from ikeguard.audit.events import EventName
from ikeguard.policy.loader import load_config
from ikeguard.service.peers import PeerCommandError, add_peer, disable_peer, enable_peer, list_peers
from ikeguard.service.plan import InventorySelectors
from tests.control.recording import RecordingGateway

A = "merchant-a.merchants.processor.example"
B = "merchant-b.merchants.processor.example"
C = "merchant-c.merchants.processor.example"


def _sa(uid: int, peer: str) -> dict[str, Any]:
    return {"uniqueid": uid, "name": "merchants", "remote_id": peer, "state": "ESTABLISHED", "children": []}


@pytest.fixture
def gateway(tmp_path: Path, examples_dir: Path) -> RecordingGateway:
    target = tmp_path / "examples"
    shutil.copytree(examples_dir, target)
    config = load_config(target / "processor-gateway.toml")
    gw = RecordingGateway([_sa(1, A), _sa(2, B)])
    gw.plan = types.SimpleNamespace(config=config, selectors=InventorySelectors(config.inventories))
    return gw


def _reloaded(gw: RecordingGateway) -> dict[str, Any]:
    again = load_config(gw.plan.config.path)
    return {p.id: p for p in again.inventories["merchants"].peers}


def test_list_shows_every_peer_with_its_sas(gateway: RecordingGateway) -> None:
    peers = list_peers(gateway)
    assert [(p["id"], p["enabled"], p["ike_sas"], p["ticket"]) for p in peers] == [
        (A, True, 1, "CHG-1042"), (B, True, 1, "CHG-1043")]
    assert peers[0]["remote_ts"] == ["10.20.1.0/24"] and peers[0]["connection"] == "merchants"
    with pytest.raises(PeerCommandError, match="connection 'nope' has no peer inventory"):
        list_peers(gateway, conn="nope")


def test_disable_closes_only_that_peer_refuses_it_and_persists(gateway: RecordingGateway) -> None:
    result = disable_peer(gateway, A, ticket="INC-7", admin="alice")
    assert result["enabled"] is False and result["terminated"] == 1
    terminates = [kw for name, kw in gateway.calls if name == "terminate"]
    assert len(terminates) == 1 and terminates[0]["peer"] == A and terminates[0]["conn"] == "merchants"
    # the engine's %peer lookup (what IKE_AUTH asks) now refuses A and still serves B
    assert gateway.plan.selectors.selectors_for("merchants", A) is None
    assert gateway.plan.selectors.selectors_for("merchants", B) is not None
    assert _reloaded(gateway)[A].enabled is False and _reloaded(gateway)[B].enabled is True
    event = gateway.audit.events[-1]
    assert event.event is EventName.PEER_DISABLED and event.remote_id == A and event.admin == "alice"
    assert event.details["ticket"] == "INC-7" and event.connection == "merchants"

    enabled = enable_peer(gateway, A, ticket="INC-8", admin="bob")
    assert enabled["enabled"] is True
    assert gateway.plan.selectors.selectors_for("merchants", A) is not None
    assert _reloaded(gateway)[A].enabled is True
    assert gateway.audit.events[-1].event is EventName.PEER_ENABLED
    assert gateway.audit.events[-1].details["ticket"] == "INC-8"


def test_add_binds_subnets_and_refuses_overlap_and_strangers(gateway: RecordingGateway) -> None:
    added = add_peer(gateway, C, ["10.20.3.0/24"], ticket="CHG-2001", admin="alice")
    assert added["id"] == C and added["enabled"] is True
    selectors = gateway.plan.selectors.selectors_for("merchants", C)
    assert [str(s) for s in selectors] == ["10.20.3.0/24"]
    assert _reloaded(gateway)[C].ticket == "CHG-2001"
    assert gateway.audit.events[-1].event is EventName.PEER_ADDED
    assert gateway.audit.events[-1].details["remote_ts"] == "10.20.3.0/24"

    with pytest.raises(PeerCommandError, match=r"overlaps 10\.20\.1\.0/24 of peer"):
        add_peer(gateway, "merchant-d.merchants.processor.example", ["10.20.1.128/25"])
    with pytest.raises(PeerCommandError, match="no connection whose remote id matches"):
        add_peer(gateway, "intruder.example.org", ["10.99.0.0/24"])
    with pytest.raises(PeerCommandError, match="duplicate inventory peer"):
        add_peer(gateway, C, ["10.20.9.0/24"])
    with pytest.raises(PeerCommandError, match="give the peer's subnets"):
        add_peer(gateway, "merchant-e.merchants.processor.example", [])
    assert len([e for e in gateway.audit.events if e.event is EventName.PEER_ADDED]) == 1


def test_unknown_and_quarantined_peers_are_refused(gateway: RecordingGateway) -> None:
    with pytest.raises(PeerCommandError, match="no connection that lists"):
        disable_peer(gateway, C)
    inventory = gateway.plan.config.inventories["merchants"]
    inventory.disable(B, "quarantined: seg.rule")
    with pytest.raises(PeerCommandError, match=r"quarantined: seg\.rule by the compliance profile"):
        enable_peer(gateway, B)
    assert gateway.plan.selectors.selectors_for("merchants", B) is None


def test_disable_without_sas_terminates_nothing(gateway: RecordingGateway) -> None:
    add_peer(gateway, C, ["10.20.3.0/24"])
    result = disable_peer(gateway, C, conn="merchants")
    assert result["terminated"] == 0
    assert not [kw for name, kw in gateway.calls if name == "terminate"]
