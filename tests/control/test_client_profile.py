"""Issue 19 item 5: ``ikeguard client-profile`` writes an Apple .mobileconfig that parses as a plist with
the expected IKEv2 keys, a PowerShell script naming only the connection's algorithms, and a swanctl.conf
(the interop test connects with it); a connection its profile refuses gets none, a suite a platform
cannot express is an error."""

from __future__ import annotations

import plistlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main

CONFIG = """[gateway]
profile = "baseline"

[radius.servers.a]
address = "127.0.0.1"
secret_file = "radius.secret"

[pools.staff]
addrs = "203.0.113.64/28"

[secrets.ike.dev]
ids = ["gw.example.net", "laptop.example.net"]
secret = "0x4b1f2e8d9c7a6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a"

[connections.rw]
local_addrs = ["192.0.2.1"]
pools = ["staff"]
proposals = ["@IKE@"]

[connections.rw.local]
auth = "psk"
id = "gw.example.net"

[connections.rw.remote-1]
auth = "psk"
id = "laptop.example.net"

[connections.rw.remote-2]
auth = "eap-radius"

[connections.rw.groups.staff]
local_ts = ["198.51.100.0/25"]

[connections.rw.groups.cde]
cde = true
local_ts = ["0.0.0.0/0"]

[connections.rw.children.net]
local_ts = ["198.51.100.0/25"]
esp_proposals = ["@ESP@"]
"""


def _profile(tmp_path: Path, fmt: str, *extra: str, ike: str = "aes256gcm16-prfsha384-ecp384",
             esp: str = "aes256gcm16-ecp384") -> tuple[int, bytes, str]:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.replace("@IKE@", ike).replace("@ESP@", esp))
    (tmp_path / "radius.secret").write_text("s3cret\n")
    (tmp_path / "radius.secret").chmod(0o600)
    result = CliRunner().invoke(main, ["client-profile", "-c", str(path), "--conn", "rw", "--user", "alice",
                                       "--format", fmt, *extra])
    return result.exit_code, result.stdout_bytes, result.stderr


def test_mobileconfig_is_an_apple_plist_with_the_ikev2_payload(tmp_path: Path) -> None:
    code, data, err = _profile(tmp_path, "mobileconfig")
    assert code == 0, err
    profile = plistlib.loads(data)
    assert profile["PayloadType"] == "Configuration"
    [vpn] = profile["PayloadContent"]
    assert vpn["PayloadType"] == "com.apple.vpn.managed" and vpn["VPNType"] == "IKEv2"
    ikev2 = vpn["IKEv2"]
    assert ikev2["RemoteAddress"] == "192.0.2.1" and ikev2["RemoteIdentifier"] == "gw.example.net"
    assert ikev2["AuthenticationMethod"] == "Certificate" and ikev2["ExtendedAuthEnabled"] == 1
    assert ikev2["AuthName"] == "alice"
    assert ikev2["IKESecurityAssociationParameters"] == {
        "EncryptionAlgorithm": "AES-256-GCM", "IntegrityAlgorithm": "SHA2-384", "DiffieHellmanGroup": 20,
        "LifeTimeInMinutes": 240}
    child = ikev2["ChildSecurityAssociationParameters"]
    assert child["EncryptionAlgorithm"] == "AES-256-GCM" and child["DiffieHellmanGroup"] == 20
    assert ikev2["EnablePFS"] == 1


def test_powershell_names_only_the_connections_algorithms(tmp_path: Path) -> None:
    code, data, err = _profile(tmp_path, "powershell", "--group", "staff")
    assert code == 0, err
    text = data.decode()
    assert "-TunnelType Ikev2" in text and "-SplitTunneling $true" in text
    constants = set(re.findall(r"-(?:AuthenticationTransformConstants|CipherTransformConstants|"
                               r"EncryptionMethod|IntegrityCheckMethod|DHGroup|PfsGroup) (\S+)", text))
    assert constants == {"GCMAES256", "SHA384", "ECP384"}
    assert 'Add-VpnConnectionRoute -ConnectionName "rw" -DestinationPrefix "198.51.100.0/25"' in text
    code, data, _ = _profile(tmp_path, "powershell", "--group", "cde")
    full = data.decode()
    assert code == 0 and "-SplitTunneling $false" in full and "Add-VpnConnectionRoute" not in full


def test_swanctl_profile(tmp_path: Path) -> None:
    code, data, err = _profile(tmp_path, "swanctl", "--eap", "mschapv2")
    assert code == 0, err
    text = data.decode()
    for line in ("remote_addrs = 192.0.2.1", "vips = 0.0.0.0", "proposals = aes256gcm16-prfsha384-ecp384",
                 "auth = eap-mschapv2", "eap_id = alice", "id = gw.example.net",
                 "remote_ts = 198.51.100.0/25", "esp_proposals = aes256gcm16-ecp384"):
        assert line in text, text


@pytest.mark.parametrize(("fmt", "ike", "esp", "message"), [
    ("powershell", "chacha20poly1305-prfsha384-curve25519", "chacha20poly1305-curve25519",
     "Windows has no IPsec constant for chacha20poly1305"),
    ("mobileconfig", "aes256-sha384-ecp384", "aes256-sha384-ecp384", ""),
])
def test_what_a_platform_cannot_express(tmp_path: Path, fmt: str, ike: str, esp: str, message: str) -> None:
    code, data, err = _profile(tmp_path, fmt, ike=ike, esp=esp)
    if message:
        assert code == 1 and message in err
    else:
        assert code == 0 and plistlib.loads(data)["PayloadContent"][0]["IKEv2"][
            "IKESecurityAssociationParameters"]["EncryptionAlgorithm"] == "AES-256"


def test_refused_configuration_gets_no_profile(tmp_path: Path) -> None:
    code, _, err = _profile(tmp_path, "swanctl", ike="aes128-sha1-modp1024")
    assert code == 1 and "ikeguard client-profile:" in err
    code, _, err = _profile(tmp_path, "swanctl", "--group", "nope")
    assert code == 2 and "no group 'nope'" in err
