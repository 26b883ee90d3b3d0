"""The test-config builder writes TOML that ikeguard's own loader accepts, with the values asked for."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ikeguard.policy.loader import load_config
from ikeguard.tools.certfactory import CertificateAuthority, KeyKind
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgPeer,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    peers_toml,
    secret_files,
    to_toml,
)

GW = "gw.ss-lab.example"
CLIENT = "client.ss-lab.example"


def _write(directory: Path, files: dict[str, str | bytes]) -> None:
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(path, 0o600)


def test_psk_config_loads_with_the_values_given(tmp_path: Path) -> None:
    psk = IkgSecret("client", ids=[CLIENT], secret="0x" + "ab" * 32)
    text = gateway_toml(
        [
            IkgConnection(
                "clients",
                local_addrs=["192.0.2.1"],
                remote_addrs=["192.0.2.2"],
                local=IkgLocal("psk", id=GW),
                remote=IkgRemote("psk", id=CLIENT),
                children=[IkgChild("net", local_ts=["198.51.100.0/25"], remote_ts=["198.51.100.128/25"],
                                   rekey_time="90s", life_time="2m", start_action="none")],
                dpd_delay="5s",
            )
        ],
        secrets=[psk],
        gateway={"dos_protection": False},
    )
    assert "ab" * 32 not in text  # the PSK is in its own file, not in the config
    _write(tmp_path, {"gateway.toml": text, **secret_files([psk])})
    loaded = load_config(tmp_path / "gateway.toml")
    model = loaded.model
    assert model.gateway.profile == "baseline" and model.gateway.dataplane == "none"
    assert model.gateway.listen == ["192.0.2.1"] and model.gateway.dos_protection is False
    conn = model.connections["clients"]
    assert conn.local.auth == "psk" and conn.remote.id == CLIENT and conn.dpd_delay == 5
    child = conn.children["net"]
    assert child.rekey_time == 90 and child.life_time == 120
    assert child.remote_ts == ["198.51.100.128/25"]
    assert model.secrets.ike["client"].secret_file == "secrets/client.psk"
    assert (tmp_path / "secrets" / "client.psk").read_text().strip() == "0x" + "ab" * 32
    assert "0xabab" not in repr(psk)


def test_certificate_template_with_inventory_loads(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root("CN=conf test CA", KeyKind.ECDSA_P384)
    gw = ca.issue_leaf(f"CN={GW}", sans=[GW])
    files: dict[str, str | bytes] = {
        "pki/ca.pem": ca.issued.cert_pem(), "pki/gw.pem": gw.cert_pem(), "pki/gw.key": gw.key_pem(),
        "merchants.toml": peers_toml([
            IkgPeer("a.merchants.example", ["198.51.100.128/26"], ticket="CHG-1"),
            IkgPeer("b.merchants.example", ["198.51.100.192/26"], enabled=False),
        ]),
    }
    text = gateway_toml(
        [
            IkgConnection(
                "merchants",
                local_addrs=["192.0.2.1"],
                remote_addrs=["%any"],
                local=IkgLocal(id=GW, certs=["pki/gw.pem"], key="pki/gw.key"),
                remote=IkgRemote(id="*.merchants.example", cacerts=["vpn"], revocation="relaxed",
                                 peers="merchants.toml"),
                children=[IkgChild("card", local_ts=["198.51.100.0/25"], remote_ts=["%peer"])],
                unique="replace",
            )
        ],
        authorities=[IkgAuthority("vpn", cacert="pki/ca.pem")],
        listen=["192.0.2.1", "2001:db8:0:1::1"],
        audit={"retention_days": 30, "sinks": [{"type": "json", "path": "audit.jsonl"}]},
    )
    _write(tmp_path, {"gateway.toml": text, **files})
    loaded = load_config(tmp_path / "gateway.toml")
    assert loaded.model.authorities["vpn"].cacert == "pki/ca.pem"
    assert loaded.model.audit.sinks[0].path == "audit.jsonl"
    assert loaded.model.connections["merchants"].remote.cacerts == ["vpn"]
    assert "merchants" in loaded.inventories


def test_unset_fields_are_not_written() -> None:
    text = gateway_toml([IkgConnection("c", local=IkgLocal("psk"), remote=IkgRemote("psk"))],
                        profile=None, dataplane=None, listen=None, state_dir=None)
    data = tomllib.loads(text)
    assert data["gateway"] == {}
    assert set(data["connections"]["c"]) == {"proposals", "local", "remote", "children"}
    assert set(data["connections"]["c"]["children"]["net"]) == {"local_ts", "remote_ts", "esp_proposals"}


_keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_scalars = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
_leaf = st.one_of(_scalars, st.lists(st.text(max_size=8), max_size=3))
_trees = st.recursive(
    st.dictionaries(_keys, _leaf, max_size=4),
    lambda inner: st.dictionaries(_keys, st.one_of(_leaf, inner, st.lists(inner, min_size=1, max_size=2)),
                                  max_size=3),
    max_leaves=12,
)


@given(_trees)
def test_to_toml_round_trips_through_tomllib(tree: dict[str, object]) -> None:
    assert tomllib.loads(to_toml(tree)) == tree
