"""build_plan: the shared example configs become engine settings a gateway can run; every credential
problem is reported with its key path; profiles reach certificate validation and data-plane limits."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from ikeguard.engine.settings import AuthKind
from ikeguard.policy.errors import ConfigUnreadable
from ikeguard.service.plan import ConfigRefused, build_plan
from ikeguard.wire.iana import EncrId
from tests.policy.conftest import edit
from tests.policy.test_certificates import issue_example_pki

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def examples(tmp_path: Path, examples_dir: Path) -> Path:
    target = tmp_path / "examples"
    shutil.copytree(examples_dir, target)
    issue_example_pki(target)
    return target


def test_processor_example_translates_for_the_engine(examples: Path) -> None:
    plan = build_plan(examples / "processor-gateway.toml", now=NOW)
    conn = plan.connections["merchants"]
    assert conn.local.kind is AuthKind.PUBKEY and conn.local.identity == "gw.processor.example"
    assert conn.local.private_key is not None and len(conn.local.certs) == 1
    assert conn.remote.identity == "*.merchants.processor.example"
    assert [p.encr[0].id for p in conn.ike_proposals] == [EncrId.AES_GCM_16]
    child = conn.children[0]
    assert child.name == "card-data" and child.remote_ts == ("%peer",) and child.pfs
    assert child.life_bytes == 64 << 30
    assert plan.child_actions[("merchants", "card-data")].dpd_action == "clear"
    assert plan.state_dir == examples / "state"
    assert plan.listen == ("192.0.2.1",) and plan.dataplane == "userspace"
    assert plan.engine_settings.nat_keepalive == 20.0  # [gateway] keep_alive default (charon.keep_alive)
    assert [s.type for s in plan.audit_sinks] == ["syslog-tls"]
    # the validator knows the connection's anchors and asks for them in CERTREQ
    assert len(plan.validator.certreq_authorities("merchants")) == 1
    assert plan.validator.connections["merchants"].policy.revocation == "strict"
    assert "ed25519" in plan.validator.connections["merchants"].policy.key_types


def test_percent_peer_follows_the_live_inventory(examples: Path) -> None:
    plan = build_plan(examples / "processor-gateway.toml", now=NOW)
    inventory = plan.config.inventories["merchants"]
    peer = inventory.peers[0]
    assert plan.selectors.selectors_for("merchants", peer.id) == peer.selectors
    inventory.disable(peer.id)
    assert plan.selectors.selectors_for("merchants", peer.id) is None  # refused at the next IKE_AUTH
    assert plan.selectors.selectors_for("merchants", "stranger.merchants.processor.example") is None
    assert plan.selectors.selectors_for("nope", peer.id) is None


def test_missing_key_and_unreadable_certificate_are_named(examples: Path) -> None:
    (examples / "pki" / "gw.key").unlink()
    (examples / "pki" / "gw.pem").write_text("not a certificate")
    with pytest.raises(ConfigRefused) as info:
        build_plan(examples / "processor-gateway.toml", now=NOW, profile_override="baseline")
    text = str(info.value)
    assert "connections.merchants.local.key = pki/gw.key" in text
    assert "connections.merchants.local.certs[0] = pki/gw.pem" in text


def test_profile_violation_is_refused_with_the_check_findings(examples: Path) -> None:
    edit(examples / "processor-gateway.toml", 'proposals = ["aes256gcm16-prfsha384-ecp384"]',
         'proposals = ["3des-sha1-modp1024"]')
    with pytest.raises(ConfigRefused) as info:
        build_plan(examples / "processor-gateway.toml", now=NOW)
    assert any(f.rule == "crypto.ike.encr" and f.path.startswith("connections.merchants")
               for f in info.value.findings)


def test_additional_key_exchanges_load_for_ike_and_child_sas(examples: Path) -> None:
    """Issue 25: ke1_..ke7_ run in IKE_INTERMEDIATE (IKE SA) and IKE_FOLLOWUP_KE (Child SAs, rekeys): both
    load (d1e2ff4 refused them while neither exchange existed)."""
    edit(examples / "processor-gateway.toml", 'proposals = ["aes256gcm16-prfsha384-ecp384"]',
         'proposals = ["aes256gcm16-prfsha384-ecp384-ke1_mlkem768"]')
    edit(examples / "processor-gateway.toml", 'esp_proposals = ["aes256gcm16-ecp384"]',
         'esp_proposals = ["aes256gcm16-ecp384-ke1_mlkem1024"]')
    plan = build_plan(examples / "processor-gateway.toml", now=NOW, profile_override="baseline")
    (spec,) = plan.connections["merchants"].ike_proposals
    assert [int(t.id) for t in spec.addke] == [36]
    (esp,) = plan.connections["merchants"].children[0].esp_proposals
    assert [int(t.id) for t in esp.addke] == [37]


def test_unreadable_config_is_not_a_refusal(tmp_path: Path) -> None:
    with pytest.raises(ConfigUnreadable):
        build_plan(tmp_path / "missing.toml", now=NOW)


def test_cnsa_profile_narrows_peer_certificate_rules(examples: Path) -> None:
    plan = build_plan(examples / "processor-gateway.toml", now=NOW, profile_override="baseline")
    base = plan.validator.connections["merchants"].policy
    from ikeguard.policy.profile import load_profile
    from ikeguard.service.plan import _validation_policy

    cnsa = _validation_policy(load_profile("cnsa-1"))
    assert cnsa.signature_hashes == {"sha384"} and cnsa.min_ec_bits == 384
    assert "ed25519" not in cnsa.key_types
    assert base.min_rsa_bits <= cnsa.min_rsa_bits


def test_psk_connection_takes_the_secret_bound_to_its_peer(tmp_path: Path) -> None:
    secret = tmp_path / "merchant.psk"
    secret.write_text("x" * 10 + "Kq8#vT2$wZ9!pL4@rN6^sM1&")
    secret.chmod(0o600)
    (tmp_path / "other.psk").write_text("another peer's own key: Zr5!wQ8#uY3$eI7%")
    (tmp_path / "other.psk").chmod(0o600)
    (tmp_path / "gw.toml").write_text("""
[gateway]
profile = "baseline"
[connections.lab]
remote_addrs = ["192.0.2.2"]
[connections.lab.local]
auth = "psk"
id = "gw.example.net"
[connections.lab.remote]
auth = "psk"
id = "client.example.net"
[connections.lab.children.net]
local_ts = ["198.51.100.0/25"]
remote_ts = ["198.51.100.128/25"]
[secrets.ike.other]
ids = ["someone.example.net"]
secret_file = "other.psk"
[secrets.ike.client]
ids = ["client.example.net"]
secret_file = "merchant.psk"
""")
    plan = build_plan(tmp_path / "gw.toml", now=NOW)
    conn = plan.connections["lab"]
    assert conn.local.psk == secret.read_text().strip().encode() == conn.remote.psk
    assert "Kq8" not in repr(conn)  # secrets never in reprs


def test_restrict_esp_drops_what_the_data_plane_cannot_run(examples: Path) -> None:
    plan = build_plan(examples / "processor-gateway.toml", now=NOW)
    plan.restrict_esp(lambda t: t.id != EncrId.AES_GCM_16)
    assert plan.connections["merchants"].children[0].esp_proposals == ()
    plan = build_plan(examples / "processor-gateway.toml", now=NOW)
    plan.restrict_esp(lambda t: True)
    assert len(plan.connections["merchants"].children[0].esp_proposals) == 1
