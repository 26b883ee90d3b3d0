"""reload_gateway on real plans (build_plan over the shared examples + a second connection): what is kept,
re-established (paced), removed and refused, and what is audited. The gateway side is a RecordingGateway
(protocol level); the same cases against a running gateway and strongSwan are in tests/control."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from ikeguard.audit.events import EventName, Outcome
from ikeguard.service import reload as reload_module
from ikeguard.service.plan import build_plan
from ikeguard.service.reload import ReloadResult, reload_gateway
from tests.control.recording import RecordingGateway
from tests.pki.certs import issue, make_key
from tests.policy.conftest import edit
from tests.policy.test_certificates import _leaf, _write_cert, issue_example_pki

A = "merchant-a.merchants.processor.example"
B = "merchant-b.merchants.processor.example"
HQ = """
[connections.hq]
local_addrs = ["192.0.2.1"]
remote_addrs = ["198.51.100.7"]
proposals = ["aes256gcm16-prfsha384-ecp384"]
rekey_time = "12h"
reauth_time = "24h"
rand_time = "30m"
dpd_delay = "30s"

[connections.hq.local]
auth = "pubkey"
id = "gw.processor.example"
certs = ["pki/gw.pem"]
key = "pki/gw.key"

[connections.hq.remote]
auth = "pubkey"
id = "hq.processor.example"
cacerts = ["processor-vpn"]
revocation = "strict"

[connections.hq.children.net]
local_ts = ["10.10.0.0/24"]
remote_ts = ["10.30.0.0/24"]
esp_proposals = ["aes256gcm16-ecp384"]
start_action = "start"
rekey_time = "1h"
life_time = "2h"
rand_time = "5m"
life_bytes = "64G"
"""


class ReloadingGateway(RecordingGateway):
    """RecordingGateway with the extra method reload uses (start_ike) and SAs that go away when deleted."""

    def start_ike(self, conn: str, children: list[str] | None = None) -> int:
        self._call("start_ike", conn=conn, children=children)
        return 99

    def terminate(self, **kwargs: Any) -> int:
        count = super().terminate(**kwargs)
        uid = kwargs.get("uniqueid")
        self._sas = [s for s in self._sas if s["uniqueid"] != uid]
        return count


def _sa(uid: int, name: str, peer: str) -> dict[str, Any]:
    return {"uniqueid": uid, "name": name, "remote_id": peer, "state": "ESTABLISHED", "children": []}


@pytest.fixture
def config(tmp_path: Path, examples_dir: Path) -> Path:
    target = tmp_path / "examples"
    shutil.copytree(examples_dir, target)
    issue_example_pki(target, now=dt.datetime.now(dt.UTC))  # build_plan below reads the wall clock
    path = target / "processor-gateway.toml"
    path.write_text(path.read_text() + HQ)
    return path


@pytest.fixture
def gateway(config: Path) -> ReloadingGateway:
    gw = ReloadingGateway([_sa(1, "merchants", A), _sa(2, "merchants", B),
                           _sa(3, "hq", "hq.processor.example")])
    gw.plan = build_plan(config, now=dt.datetime.now(dt.UTC))
    return gw


def _reload(gw: ReloadingGateway, **kwargs: Any) -> ReloadResult:
    return asyncio.run(reload_gateway(gw, **kwargs))


def _terminated(gw: ReloadingGateway) -> list[int]:
    return [kw["uniqueid"] for name, kw in gw.calls if name == "terminate"]


def _events(gw: ReloadingGateway, name: EventName) -> list[Any]:
    return [e for e in gw.audit.events if e.event is name]


def test_unchanged_config_keeps_every_sa_and_swaps_the_plan(gateway: ReloadingGateway) -> None:
    old = gateway.plan
    result = _reload(gateway, admin="alice")
    assert result.kept == ["merchants", "hq"] and not (result.changed or result.added or result.removed)
    assert _terminated(gateway) == [] and gateway.plan is not old
    loaded = _events(gateway, EventName.CONFIG_LOADED)
    assert len(loaded) == 1 and loaded[0].admin == "alice" and loaded[0].details["kept"] == 2


def test_a_renewed_certificate_file_is_not_a_change(gateway: ReloadingGateway, config: Path) -> None:
    ca = issue("CN=Processor VPN CA, O=Processor", key=make_key("ec384", 101), ca=True,
               not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
               not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=3650))
    renewed = _leaf(ca, "gw.processor.example", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    _write_cert(config.parent / "pki" / "gw.pem", renewed.cert)
    result = _reload(gateway)
    assert result.kept == ["merchants", "hq"] and _terminated(gateway) == []
    # the new credentials are in the plan the next authentication uses
    assert gateway.plan.connections["hq"].local.certs[0].serial_number == renewed.cert.serial_number


def test_changed_child_is_reestablished_paced_and_the_other_connection_untouched(
        gateway: ReloadingGateway, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload_module, "TERMINATIONS_PER_SECOND", 10.0)
    edit(config, 'remote_ts = ["10.30.0.0/24"]', 'remote_ts = ["10.31.0.0/24"]')
    started = time.monotonic()
    result = _reload(gateway, wait=True)
    assert result.changed == ["hq"] and result.kept == ["merchants"] and result.to_restart == 1
    assert result.starting == ["hq"]
    assert _terminated(gateway) == [3]  # only hq's SA; merchants' SAs 1 and 2 keep running
    assert ("start_ike", {"conn": "hq", "children": ["net"]}) in gateway.calls
    assert time.monotonic() - started >= 0.1  # paced, not in one burst


def test_pacing_spreads_many_sas(gateway: ReloadingGateway, config: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload_module, "TERMINATIONS_PER_SECOND", 50.0)
    gateway._sas = [_sa(i, "hq", "hq.processor.example") for i in range(10, 20)]
    edit(config, 'esp_proposals = ["aes256gcm16-ecp384"]\nstart_action',
         'esp_proposals = ["aes128gcm16-ecp384"]\nstart_action')
    started = time.monotonic()
    _reload(gateway, wait=True)
    assert sorted(_terminated(gateway)) == list(range(10, 20))
    assert time.monotonic() - started >= 10 / 50.0 * 0.9


def test_removed_connection_is_deleted_and_added_one_started(gateway: ReloadingGateway, config: Path) -> None:
    text = config.read_text()
    config.write_text(text.replace("[connections.hq", "[connections.hq2"))
    result = _reload(gateway, wait=True)
    assert result.removed == ["hq"] and result.added == ["hq2"] and result.terminated == 1
    assert _terminated(gateway) == [3]
    assert ("start_ike", {"conn": "hq2", "children": ["net"]}) in gateway.calls


def test_invalid_config_is_refused_and_nothing_changes(gateway: ReloadingGateway, config: Path) -> None:
    old = gateway.plan
    edit(config, 'proposals = ["aes256gcm16-prfsha384-ecp384"]', 'proposals = ["3des-sha1-modp1024"]')
    result = _reload(gateway, admin="bob")
    assert result.refused is not None and "crypto.ike" in result.refused
    assert result.refused.endswith("the running configuration stays") and "\n" not in result.refused
    assert gateway.plan is old and _terminated(gateway) == []
    assert not [c for c in gateway.calls if c[0] == "apply_plan"]
    rejected = _events(gateway, EventName.CONFIG_REJECTED)
    assert rejected and all(e.outcome is Outcome.FAILURE and e.admin == "bob" for e in rejected)
    assert any(e.details["rule"].startswith("crypto.ike") for e in rejected)
    assert not _events(gateway, EventName.CONFIG_LOADED)


def test_unreadable_config_is_refused(gateway: ReloadingGateway, config: Path) -> None:
    config.write_text("[gateway\nbroken")
    result = _reload(gateway)
    assert result.refused is not None and "not valid TOML" in result.refused
    assert _events(gateway, EventName.CONFIG_REJECTED)


def test_peer_removed_from_inventory_file_loses_only_its_sas(gateway: ReloadingGateway, config: Path) -> None:
    peers = config.parent / "merchants.toml"
    text = peers.read_text()
    peers.write_text(text[:text.index("[[peer]]\nid = \"merchant-b")])
    result = _reload(gateway)
    assert result.kept == ["merchants", "hq"]
    assert result.peers_closed == [f"merchants/{B}"] and _terminated(gateway) == [2]
    assert gateway.plan.selectors.selectors_for("merchants", B) is None
    assert gateway.plan.selectors.selectors_for("merchants", A) is not None


def test_quarantined_connection_is_removed_and_recorded(gateway: ReloadingGateway, config: Path) -> None:
    edit(config, 'on_violation = "refuse"', 'on_violation = "quarantine"')
    text = config.read_text()
    hq = text.index("[connections.hq]")
    config.write_text(text[:hq] + text[hq:].replace('proposals = ["aes256gcm16-prfsha384-ecp384"]',
                                                    'proposals = ["aes128-sha1-modp2048"]', 1))
    result = _reload(gateway, admin="carol")
    assert result.refused is None and result.removed == ["hq"] and result.kept == ["merchants"]
    assert _terminated(gateway) == [3]
    quarantine = [e for e in _events(gateway, EventName.CONFIG_REJECTED) if e.connection == "hq"]
    assert quarantine and quarantine[0].admin == "carol" and "quarantined" in quarantine[0].reason


def test_gateway_wide_changes_are_reported_as_needing_a_restart(gateway: ReloadingGateway,
                                                                 config: Path) -> None:
    edit(config, 'listen = ["192.0.2.1"]', 'listen = ["192.0.2.1", "2001:db8::1"]')
    result = _reload(gateway)
    assert result.restart_needed == ["listen"] and result.kept == ["merchants", "hq"]
    assert _events(gateway, EventName.CONFIG_LOADED)[0].details["restart_needed"] == "listen"
