"""Which ``[secrets.ike]`` entry serves which connection, and how a secret's text becomes the key (issue 13
S1 and item 2): ``policy.psk`` is the one implementation; ``build_plan`` (what ``ikeguard run`` uses) and the
``psk.binding`` / ``psk.entropy`` checks (what ``ikeguard check`` reports) must agree with it.

S1: a secret naming the gateway's id and peer A's id was handed to peer B's connection too (the first secret
sharing *any* id won), so A's key authenticated IDi = B. The gateway-level regression test is
tests/interop/test_psk_impersonation.py; here the plan and the check are pinned layout by layout.

Item 2: ``0x``/``0s`` secrets are binary in strongSwan (swanctl ``load_secret``: case-insensitive prefix,
``chunk_from_hex`` / ``chunk_from_base64``); the interop proof is tests/interop/test_psk_interop.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import load_profile
from ikeguard.policy.psk import PskError, choose_secret, decode_psk, secret_file_value, unquote_setting
from ikeguard.policy.report import RuleResult, evaluate
from ikeguard.service.plan import ConfigRefused, build_plan

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)  # only compared with itself (no certificates here)
GW = "gw.example.net"
A, B = "a.example.net", "b.example.net"
KEY_A = "0x" + "a1" * 32
KEY_B = "0sdmVyeSBzZWNyZXQga2V5IG9mIHBlZXIgQiwgMzIgb2N0ZXRzIQ=="  # base64 of a 32-octet text
SUBNETS = {A: "198.51.100.128/26", B: "198.51.100.192/26", "c.example.net": "203.0.113.0/26",
           "*.example.net": "dynamic", "%any": "dynamic"}


def _conn(name: str, remote_id: str, local_id: str = GW, remote_addr: str = "%any") -> str:
    return f"""
[connections.{name}]
remote_addrs = ["{remote_addr}"]
proposals = ["aes256gcm16-prfsha384-ecp384"]
local = {{ auth = "psk", id = "{local_id}" }}
remote = {{ auth = "psk", id = "{remote_id}" }}
[connections.{name}.children.net]
local_ts = ["198.51.100.0/25"]
remote_ts = ["{SUBNETS[remote_id]}"]
esp_proposals = ["aes256gcm16-ecp384"]
"""


def _secret(name: str, ids: list[str], value: str, tmp_path: Path, *, in_file: bool = True) -> str:
    ids_text = ", ".join(f'"{i}"' for i in ids)
    if not in_file:
        return f'\n[secrets.ike.{name}]\nids = [{ids_text}]\nsecret = "{value}"\n'
    path = tmp_path / f"{name}.psk"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return f'\n[secrets.ike.{name}]\nids = [{ids_text}]\nsecret_file = "{name}.psk"\n'


def _write(tmp_path: Path, body: str, profile: str = "baseline") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(f'[gateway]\nprofile = "{profile}"\n' + body)
    return path


def _binding(path: Path, profile: str) -> list[RuleResult]:
    """The psk.binding results of ``ikeguard check --profile profile`` for the config."""
    report = evaluate(load_config(path), load_profile(profile), now=NOW)
    return [r for r in report.results if r.rule.id == "psk.binding"]


def _failures(results: list[RuleResult]) -> list[str]:
    return [f"{r.scope}: {r.message}" for r in results if r.status == "fail"]


def _refusal(path: Path) -> str:
    with pytest.raises(ConfigRefused) as info:
        build_plan(path, now=NOW)
    return str(info.value)


# -- S1: the layouts ------------------------------------------------------------------------------------
def test_secrets_naming_the_gateway_and_one_peer_each_serve_only_that_peer(tmp_path: Path) -> None:
    """The S1 layout (`ids = [gw, a]`, `[gw, b]`): before the fix B's connection got secret A."""
    body = _conn("peer-a", A) + _conn("peer-b", B)
    body += _secret("a", [GW, A], KEY_A, tmp_path) + _secret("b", [GW, B], KEY_B, tmp_path)
    plan = build_plan(_write(tmp_path, body), now=NOW)
    key_a, key_b = bytes.fromhex("a1" * 32), base64.b64decode(KEY_B[2:])
    assert plan.connections["peer-a"].local.psk == plan.connections["peer-a"].remote.psk == key_a
    assert plan.connections["peer-b"].local.psk == plan.connections["peer-b"].remote.psk == key_b
    for profile in ("baseline", "pci-dss-4", "nist-800-77r1"):
        results = _binding(_write(tmp_path, body), profile)
        assert not _failures(results), (profile, _failures(results))
        chosen = {r.scope: r.value for r in results if r.scope.startswith("connections.")}
        assert chosen == {"connections.peer-a.remote.id": f"{A} -> secret 'a'",
                          "connections.peer-b.remote.id": f"{B} -> secret 'b'"}


def test_the_best_match_of_both_identities_wins(tmp_path: Path) -> None:
    """strongSwan's ranking: the remote id must match; a secret naming our local id as well is preferred
    (psk.binding refuses two secrets for one identity anyway: this pins the selection itself)."""
    body = _conn("peer-a", A) + _secret("loose", [A], KEY_A, tmp_path) + _secret("bound", [GW, A], KEY_B,
                                                                                  tmp_path)
    model = load_config(_write(tmp_path, body)).model
    assert choose_secret("peer-a", model.connections["peer-a"], model.secrets.ike).secret == "bound"
    assert "already has secret 'loose'" in _refusal(_write(tmp_path, body))


@pytest.mark.parametrize("profile", ["baseline", "pci-dss-4", "nist-800-77r1"])
def test_a_secret_naming_only_the_gateway_is_no_peers_key(tmp_path: Path, profile: str) -> None:
    """A secret with only our own id was a group key for every connection (and strongSwan's responder would
    try it for any peer): never used, and refused by psk.binding in every profile."""
    body = _conn("peer-a", A) + _conn("peer-b", B) + _secret("gw", [GW], KEY_A, tmp_path)
    failures = _failures(_binding(_write(tmp_path, body), profile))
    assert any(f.startswith("secrets.ike.gw.ids") and "only this gateway's own id" in f for f in failures)
    assert any(f.startswith("connections.peer-a.remote.id") and "names 'a.example.net'" in f
               for f in failures), failures
    assert any(f.startswith("connections.peer-b.remote.id") for f in failures)
    if profile == "baseline":
        message = _refusal(_write(tmp_path, body))
        assert "psk.binding" in message and KEY_A not in message


@pytest.mark.parametrize("profile", ["pci-dss-4", "nist-800-77r1", "bsi-tr-02102-3"])
def test_a_secret_without_ids_for_several_peers_is_refused(tmp_path: Path, profile: str) -> None:
    body = _conn("peer-a", A) + _conn("peer-b", B) + _secret("any", [], KEY_A, tmp_path)
    failures = _failures(_binding(_write(tmp_path, body), profile))
    assert any(f.startswith("secrets.ike.any.ids") for f in failures), failures
    assert any(f.startswith("connections.peer-a.remote.id") and "each peer could authenticate as the others"
               in f for f in failures), failures


def test_baseline_group_key_is_explicit_and_reported(tmp_path: Path) -> None:
    """Only baseline (labs, load tests) lets a secret without ids serve several peers or %any: a `warn`
    naming the group key in `check`, never a silent pass; other profiles refuse it (above)."""
    body = _conn("peer-a", A) + _conn("any", "%any") + _secret("lab", [], KEY_A, tmp_path)
    results = _binding(_write(tmp_path, body), "baseline")
    assert not _failures(results)
    warned = {r.scope for r in results if r.status == "warn" and "group key" in r.message}
    assert warned == {"connections.peer-a.remote.id", "connections.any.remote.id"}
    plan = build_plan(_write(tmp_path, body), now=NOW)
    assert plan.connections["any"].remote.psk == plan.connections["peer-a"].remote.psk


def test_a_single_secret_without_ids_for_one_peer_is_baseline_only(tmp_path: Path) -> None:
    body = _conn("peer-a", A) + _secret("lab", [], KEY_A, tmp_path)
    results = _binding(_write(tmp_path, body), "baseline")
    assert not _failures(results) and not [r for r in results if r.status == "warn"]
    assert build_plan(_write(tmp_path, body), now=NOW).connections["peer-a"].local.psk == bytes.fromhex(
        "a1" * 32)
    assert _failures(_binding(_write(tmp_path, body), "pci-dss-4"))


@pytest.mark.parametrize("remote_id", ["%any", "*.example.net"])
@pytest.mark.parametrize("profile", ["baseline", "pci-dss-4"])
def test_psk_with_a_pattern_or_any_remote_id_is_refused(tmp_path: Path, remote_id: str, profile: str) -> None:
    """Every peer holding the key could claim any identity the pattern matches (and INITIAL_CONTACT keyed on
    that identity would end another peer's SAs)."""
    body = _conn("roadwarriors", remote_id) + _secret("rw", [remote_id], KEY_A, tmp_path)
    failures = _failures(_binding(_write(tmp_path, body), profile))
    assert any("exact remote id" in f for f in failures), failures
    assert any("pattern or %any" in f for f in failures), failures
    message = _refusal(_write(tmp_path, body))
    assert "connections.roadwarriors.remote.id" in message and "exact remote id" in message


def test_two_peers_with_the_same_key_are_refused(tmp_path: Path) -> None:
    """Same value written two ways (hex and base64): after decoding it is one key for two peers."""
    same_b64 = "0s" + base64.b64encode(bytes.fromhex("a1" * 32)).decode()
    body = _conn("peer-a", A) + _conn("peer-b", B)
    body += _secret("a", [A], KEY_A, tmp_path) + _secret("b", [B], same_b64, tmp_path)
    failures = _failures(_binding(_write(tmp_path, body), "nist-800-77r1"))
    assert any("hold the same key" in f for f in failures), failures
    message = _refusal(_write(tmp_path, body))
    assert "hold the same key" in message and KEY_A not in message and same_b64 not in message


def test_two_equally_good_secrets_for_one_peer_are_refused(tmp_path: Path) -> None:
    body = _conn("peer-a", A) + _secret("one", [A], KEY_A, tmp_path) + _secret("two", [A], KEY_B, tmp_path)
    assert "all name 'a.example.net' equally" in _refusal(_write(tmp_path, body))


def test_two_connections_of_one_peer_may_share_its_secret(tmp_path: Path) -> None:
    """Same remote identity, two connections (e.g. two local ids): still that one peer's key."""
    body = _conn("peer-a", A, remote_addr="192.0.2.21") + _conn("peer-a-alt", A, local_id="gw2.example.net",
                                                               remote_addr="192.0.2.22")
    body += _secret("a", [A], KEY_A, tmp_path)
    assert not _failures(_binding(_write(tmp_path, body), "nist-800-77r1"))
    plan = build_plan(_write(tmp_path, body), now=NOW)
    assert plan.connections["peer-a"].local.psk == plan.connections["peer-a-alt"].local.psk


def test_check_cli_refuses_the_gateway_only_layout(tmp_path: Path) -> None:
    """`ikeguard check` (the CLI operators run) exits non-zero and names psk.binding, never the key."""
    body = _conn("peer-a", A) + _conn("peer-b", B) + _secret("gw", [GW], KEY_A, tmp_path)
    path = _write(tmp_path, body, profile="nist-800-77r1")
    result = subprocess.run([sys.executable, "-m", "ikeguard", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0, result.stdout
    assert "psk.binding" in result.stdout and KEY_A not in result.stdout + result.stderr
    fixed = _conn("peer-a", A) + _conn("peer-b", B)
    fixed += _secret("a", [GW, A], KEY_A, tmp_path) + _secret("b", [GW, B], KEY_B, tmp_path)
    path = _write(tmp_path, fixed, profile="nist-800-77r1")
    result = subprocess.run([sys.executable, "-m", "ikeguard", "check", "-c", str(path), "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert '"psk.binding"' in result.stdout
    assert not [line for line in result.stdout.splitlines() if "psk.binding" in line and "fail" in line]


# -- item 2: encodings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value", "encoding"), [
    ("0x0123abCD", bytes.fromhex("0123abcd"), "hex"),
    ("0X0123ABCD", bytes.fromhex("0123abcd"), "hex"),  # strcasepfx: the prefix is case-insensitive
    ("0x01:23:ab:cd", bytes.fromhex("0123abcd"), "hex"),  # chunk_from_hex skips ':' between octets
    ("0xabc", bytes.fromhex("0abc"), "hex"),  # odd digit count: filled from the right like strongSwan
    ("0sASNFZw==", bytes.fromhex("01234567"), "base64"),
    ("0SASNFZw==", bytes.fromhex("01234567"), "base64"),
    ("0s-_-_", base64.b64decode("+/+/"), "base64"),  # b642bin also maps '-' and '_' (URL-safe alphabet)
    ("not 0x: plain text", b"not 0x: plain text", "text"),
    ("p\u00e4ssw\u00f6rd", "p\u00e4ssw\u00f6rd".encode(), "text"),
])
def test_decoding_follows_swanctl(text: str, value: bytes, encoding: str) -> None:
    psk = decode_psk(text, "secrets.ike.x.secret")
    assert (psk.value, psk.encoding) == (value, encoding)
    assert text not in repr(psk)


@pytest.mark.parametrize("text", ["0x", "0xzz11", "0x12 34", "0x1:23", "0x0x12", "0s", "0sASNFZ", "0sAS=NFZw",
                                  "0sASNF*w==", "0sASNFZw==\nASNF"])
def test_malformed_binary_secrets_are_refused_naming_the_key(text: str) -> None:
    with pytest.raises(PskError) as info:
        decode_psk(text, "secrets.ike.x.secret")
    assert str(info.value).startswith("secrets.ike.x.secret: malformed 0")
    assert text[2:] not in str(info.value) or len(text) <= 2


def test_secret_files_hold_what_follows_secret_equals_in_swanctl_conf() -> None:
    """Whitespace around the value ignored; a double-quoted value is unquoted with strongSwan's settings
    escapes, and the 0x/0s prefix still applies inside quotes (the parser unquotes before load_secret)."""
    assert secret_file_value(b"0x0102\n", "k").value == b"\x01\x02"
    assert secret_file_value(b'  "0sAQI="\r\n', "k").value == b"\x01\x02"
    assert secret_file_value(b'"a \\"quoted\\" \\\\ \\t secret"', "k").value == b'a "quoted" \\ \t secret'
    assert unquote_setting('"line\\\none"', "k") == "lineone"  # escaped newline joins the lines
    assert secret_file_value(b"say \"hi\"\n", "k").value == b'say "hi"'  # not enclosed: taken as it is
    with pytest.raises(PskError):
        secret_file_value(b'"a"b"', "k")
    with pytest.raises(PskError, match="not UTF-8"):
        secret_file_value(b"\xff\xfe", "k")


@pytest.mark.parametrize("in_file", [False, True], ids=["secret", "secret_file"])
def test_plan_decodes_and_refuses_like_the_check(tmp_path: Path, in_file: bool) -> None:
    body = _conn("peer-a", A) + _secret("a", [GW, A], "0s" + base64.b64encode(b"\x00\xff" * 16).decode(),
                                        tmp_path, in_file=in_file)
    assert build_plan(_write(tmp_path, body), now=NOW).connections["peer-a"].local.psk == b"\x00\xff" * 16

    bad = "0x" + "5f" * 31 + "zz"
    body = _conn("peer-a", A) + _secret("a", [GW, A], bad, tmp_path, in_file=in_file)
    key = "secrets.ike.a.secret_file" if in_file else "secrets.ike.a.secret"
    message = _refusal(_write(tmp_path, body))
    assert f"{key} = (hidden): malformed 0x secret" in message and bad[2:] not in message
    entropy = [r for r in evaluate(load_config(_write(tmp_path, body)), load_profile("nist-800-77r1"),
                                   now=NOW).results if r.rule.id == "psk.entropy"]
    assert [r.status for r in entropy] == ["fail"] and "malformed 0x secret" in entropy[0].message


def test_entropy_is_measured_on_the_decoded_key(tmp_path: Path) -> None:
    """16 octets written as 0x (32 digits) or 0s (24 characters) are 128 bits either way."""
    key = bytes(range(16))
    for text in ("0x" + key.hex(), "0s" + base64.b64encode(key).decode()):
        body = _conn("peer-a", A) + _secret("a", [GW, A], text, tmp_path)
        results = [r for r in evaluate(load_config(_write(tmp_path, body)), load_profile("pci-dss-4"),
                                       now=NOW).results if r.rule.id == "psk.entropy"]
        encoding = "hex" if text[1] == "x" else "base64"
        assert [(r.status, r.value) for r in results] == [("fail", f"~128 bits (16 octets, {encoding})")]
