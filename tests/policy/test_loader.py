"""The loader: the shared examples load unchanged; every error names file, key path, value, expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikeguard.policy import ConfigError, ConfigUnreadable, load_config


def write(tmp_path: Path, text: str, name: str = "gw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = """
[connections.a]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
"""


@pytest.mark.parametrize("name", ["processor-gateway.toml", "merchant-a.toml"])
def test_examples_load_unchanged(examples_dir: Path, name: str) -> None:
    config = load_config(examples_dir / name)
    assert config.profile_name == "pci-dss-4"
    assert config.model.connections


def test_processor_inventory_binds_each_merchant_to_its_subnet(examples_dir: Path) -> None:
    config = load_config(examples_dir / "processor-gateway.toml")
    inventory = config.inventories["merchants"]
    assert [p.id for p in inventory.peers] == ["merchant-a.merchants.processor.example",
                                              "merchant-b.merchants.processor.example"]
    child = config.model.connections["merchants"].children["card-data"]
    assert child.rekey_time == 3600 and child.life_time == 7200 and child.life_bytes == 64 * 1024**3


def test_error_names_file_path_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """
[connections.a.children.card-data]
rekey_time = "90 minutes"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (finding,) = info.value.findings
    assert finding.file == str(path)
    assert finding.path == "connections.a.children.card-data.rekey_time"
    assert finding.value == "'90 minutes'"
    assert '"30m"' in finding.message and "expected a duration" in finding.message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """
[connections.a.children.c]
esp_proposal = ["aes256gcm16-ecp384"]
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (finding,) = info.value.findings
    assert finding.rule == "config.unknown-key"
    assert finding.path == "connections.a.children.c.esp_proposal"
    assert "did you mean 'esp_proposals'" in finding.message


def test_all_errors_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, """
[gateway]
profile = "pci-dss4"
on_violation = "quarantne"
[connections.a]
proposals = ["aes256gcm16-prfsha384-ecp385"]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "merchant*.example" }
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    by_path = {f.path: f for f in info.value.findings}
    assert "did you mean 'pci-dss-4'" in by_path["gateway.profile"].message
    assert "did you mean 'quarantine'" in by_path["gateway.on_violation"].message
    assert "ecp385" in by_path["connections.a.proposals[0]"].message
    assert "whole DNS label" in by_path["connections.a.remote.id"].message


def test_inline_secret_never_appears_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """
[secrets.ike.x]
ids = ["peer.example"]
secret = "hunter2-very-secret"
secret_file = "x.psk"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "hunter2" not in str(info.value)
    assert "exactly one" in str(info.value)


def test_missing_file_and_bad_toml_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigUnreadable):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigUnreadable) as info:
        load_config(write(tmp_path, "[gateway\n"))
    assert "not valid TOML" in str(info.value)


def test_pki_files_need_not_exist_to_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert not (tmp_path / "a.pem").exists()
    assert config.model.connections["a"].local.certs == ["a.pem"]


def test_unknown_authority_and_peer_without_inventory(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """
[authorities.vpn]
cacert = "ca.pem"
[connections.a.remote]
cacerts = ["vpm"]
id = "*.m.example"
[connections.a.children.c]
remote_ts = ["%peer"]
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = {f.path: f.message for f in info.value.findings}
    assert "did you mean 'vpn'" in messages["connections.a.remote.cacerts[0]"]
    assert "remote.peers" in messages["connections.a.remote.peers"]


def test_ambiguous_connections_are_a_load_error(tmp_path: Path) -> None:
    path = write(tmp_path, """
[connections.a]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "*.m.example" }
[connections.b]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "shop.*.example" }
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (finding,) = info.value.findings
    assert finding.rule == "seg.ambiguous-selection"


def test_exact_and_pattern_coexist(tmp_path: Path) -> None:
    path = write(tmp_path, """
[connections.a]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "*.m.example" }
[connections.b]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
remote = { id = "shop.m.example" }
[connections.c]
local = { auth = "pubkey", certs = ["a.pem"], key = "a.key" }
""")
    assert set(load_config(path).model.connections) == {"a", "b", "c"}


def test_inventory_errors_name_the_inventory_file(tmp_path: Path) -> None:
    write(tmp_path, """
[[peer]]
id = "x.m.example"
remote_ts = ["10.1.0.0/24"]
enabeld = true
""", "peers.toml")
    path = write(tmp_path, MINIMAL + """
[connections.a.remote]
id = "*.m.example"
peers = "peers.toml"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (finding,) = info.value.findings
    assert finding.file == str(tmp_path / "peers.toml")
    assert finding.path == "peer[0].enabeld"
    assert "did you mean 'enabled'" in finding.message


SCEP = """
[scep]
connection = "a"
url = "http://192.0.2.10/scep"
ca_fingerprint = "{fp}"
challenge = "env:SCEP_CHALLENGE"
identifiers = ["gw.example.net"]
"""


def test_scep_section_loads_with_the_shared_renewal_defaults(tmp_path: Path) -> None:
    fp = ":".join(["AB"] * 32)
    scep = load_config(write(tmp_path, MINIMAL + SCEP.format(fp=fp))).model.scep
    assert scep is not None and scep.ca_fingerprint == "ab" * 32
    assert scep.renew_at == 2 / 3 and scep.retry_min == 30 and scep.retry_max == 3600


def test_scep_fingerprint_and_one_enrolment_per_connection(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SHA-256 fingerprint"):
        load_config(write(tmp_path, MINIMAL + SCEP.format(fp="abcd")))
    acme = ('\n[acme]\nconnection = "a"\ndirectory = "https://ca/dir"\naccount_key = "k"\n'
            'identifiers = ["x"]\n')
    with pytest.raises(ConfigError, match=r"\[acme\] and \[scep\] both manage connection"):
        load_config(write(tmp_path, MINIMAL + SCEP.format(fp="ab" * 32) + acme))
