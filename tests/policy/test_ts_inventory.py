"""Traffic-selector narrowing (RFC 7296 §2.9) against inventory-bound selectors; inventory changes at
run time; connection selection precedence."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ikeguard.policy.errors import ConfigError
from ikeguard.policy.identity import parse_identity
from ikeguard.policy.inventory import PeerInventory
from ikeguard.policy.loader import load_config
from ikeguard.policy.selection import select_connection
from ikeguard.policy.ts import TrafficSelector, is_subset, narrow_for_responder, parse_ts, resolve


def ts(text: str) -> TrafficSelector:
    spec = parse_ts(text)
    assert spec.selector is not None
    return spec.selector


def test_peer_claiming_another_merchants_subnet_is_unacceptable(examples_dir: Path) -> None:
    config = load_config(examples_dir / "processor-gateway.toml")
    inventory = config.inventories["merchants"]
    child = config.model.connections["merchants"].children["card-data"]
    b = parse_identity("merchant-b.merchants.processor.example")
    remote = resolve(child.remote_ts, own_address=None, peer_bound=inventory.bound_selectors(b) or ())
    local = resolve(child.local_ts, own_address=None)
    assert narrow_for_responder([ts("10.20.1.0/24")], [ts("10.10.0.0/24")],
                                remote_allowed=remote, local_allowed=local) is None
    ok = narrow_for_responder([ts("10.20.0.0/16")], [ts("0.0.0.0/0")], remote_allowed=remote,
                              local_allowed=local)
    assert ok is not None
    assert ok.tsi == (ts("10.20.2.0/24"),) and ok.tsr == (ts("10.10.0.0/24"),)
    assert is_subset(ok.tsi, [ts("10.20.0.0/16")]) and not is_subset([ts("10.20.0.0/16")], ok.tsi)


def test_narrowing_keeps_protocol_and_ports() -> None:
    allowed = {"remote_allowed": [ts("10.1.5.0/24[tcp/8583]")], "local_allowed": [ts("10.2.0.0/16")]}
    narrowed = narrow_for_responder([ts("10.1.0.0/16[tcp]")], [ts("10.2.0.0/24")], **allowed)
    assert narrowed is not None
    (sel,) = narrowed.tsi
    assert (sel.protocol, sel.start_port, sel.end_port) == (6, 8583, 8583)
    assert str(sel) == "10.1.5.0/24[tcp/8583]"
    assert narrow_for_responder([ts("10.1.0.0/16[udp]")], [ts("10.2.0.0/24")], **allowed) is None


def test_dynamic_resolves_to_the_address() -> None:
    import ipaddress
    (sel,) = resolve(["dynamic"], own_address=ipaddress.ip_address("198.51.100.7"))
    assert str(sel) == "198.51.100.7"


def _inventory() -> PeerInventory:
    inv = PeerInventory("merchants", parse_identity("*.m.example"))
    inv.add("a.m.example", ["10.20.1.0/24"], ticket="CHG-1")
    inv.add("b.m.example", ["10.20.2.0/24", "2001:db8:20:2::/64"])
    return inv


def test_add_disable_enable_without_reload() -> None:
    inv = _inventory()
    a = parse_identity("a.m.example")
    assert inv.bound_selectors(a) == (ts("10.20.1.0/24"),)
    inv.disable("a.m.example", "merchant offboarded")
    assert inv.bound_selectors(a) is None
    entry = inv.get("a.m.example")
    assert entry is not None and entry.disabled_reason == "merchant offboarded"
    with pytest.raises(ConfigError, match="overlaps"):  # a disabled peer's subnet stays reserved
        inv.add("c.m.example", ["10.20.1.128/25"])
    inv.enable("a.m.example")
    assert inv.bound_selectors(a) == (ts("10.20.1.0/24"),)


@pytest.mark.parametrize(("identity", "subnets", "message"), [
    ("c.m.example", ["10.20.2.0/25"], "overlaps"),
    ("c.other.example", ["10.20.9.0/24"], "not matched by connection"),
    ("*.m.example", ["10.20.9.0/24"], "exact identities"),
    ("a.m.example", ["10.20.9.0/24"], "duplicate"),
    ("@a.m.example", ["10.20.9.0/24"], "duplicate"),
    ("c.m.example", ["dynamic"], "fixed subnets"),
])
def test_add_refusals(identity: str, subnets: list[str], message: str) -> None:
    inv = _inventory()
    with pytest.raises(ConfigError, match=message):
        inv.add(identity, subnets)
    assert len(inv) == 2


def test_save_round_trips_through_the_loader_format(tmp_path: Path) -> None:
    inv = _inventory()
    inv.disable("b.m.example")
    path = inv.save(tmp_path / "peers.toml")
    data = tomllib.loads(path.read_text())
    assert data["peer"][0] == {"id": "a.m.example", "remote_ts": ["10.20.1.0/24"], "enabled": True,
                               "ticket": "CHG-1"}
    assert data["peer"][1]["enabled"] is False


def test_selection_precedence_exact_pattern_any(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("""
[connections.catchall]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
[connections.shops]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "*.m.example" }
[connections.vip]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "vip.m.example" }
""")
    conns = load_config(path).model.connections

    def pick(identity: str) -> str | None:
        match = select_connection(conns, parse_identity(identity))
        return match.name if match else None

    assert pick("vip.m.example") == "vip"
    assert pick("shop.m.example") == "shops"
    assert pick("someone.else.example") == "catchall"
    assert select_connection(conns, parse_identity("vip.m.example"), disabled={"vip"}).name == "shops"  # type: ignore[union-attr]


def test_template_matches_only_enabled_inventory_peers(examples_dir: Path) -> None:
    config = load_config(examples_dir / "processor-gateway.toml")
    conns, invs = config.model.connections, config.inventories
    unknown = parse_identity("merchant-z.merchants.processor.example")
    assert select_connection(conns, unknown, inventories=invs) is None
    known = parse_identity("merchant-a.merchants.processor.example")
    match = select_connection(conns, known, inventories=invs)
    assert match is not None and match.peer is not None and match.peer.ticket == "CHG-1042"


def test_bulk_inventory_finds_the_one_overlap_among_5000() -> None:
    from ikeguard.policy.inventory import InventoryPeer

    def peer(i: int, subnet: str) -> InventoryPeer:
        return InventoryPeer(parse_identity(f"m{i}.m.example"), (subnet,), (ts(subnet),))

    peers = [peer(i, f"10.{64 + i // 256}.{i % 256}.0/24") for i in range(5000)]
    peers.append(peer(5000, "10.70.3.128/25"))  # inside m1539's 10.70.3.0/24
    inv, findings = PeerInventory.from_entries("merchants", parse_identity("*.m.example"), peers)
    assert not findings and len(inv) == 5001
    assert inv.conflicts == [("m1539.m.example", "m5000.m.example")]
