"""Unit tests of the scanner's pieces that need no network: KE values, catalog, verdicts, policy files,
target/rate parsing. The scanner itself is tested against real responders in tests/interop/test_scan.py."""

from __future__ import annotations

import random
from pathlib import Path

import click
import pytest

from ikeguard.control.cli_scan import parse_rate, parse_target
from ikeguard.crypto.dh import MODP_PRIMES
from ikeguard.policy.profile import load_profile
from ikeguard.scan.catalog import candidates
from ikeguard.scan.keyex import can_generate, modp_prime, public_value
from ikeguard.scan.report import judge
from ikeguard.scan.scanner import DECOY_ORDER, Observation, ScanResult
from ikeguard.scan.verdict import PolicyFileError, load_policy, policy_findings, transform_verdict
from ikeguard.wire.iana import KeId


def _probably_prime(n: int, rounds: int = 8) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(1)
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_modp_primes_from_pi_match_the_tabulated_ones() -> None:
    for method, prime in MODP_PRIMES.items():
        assert modp_prime(method) == prime


@pytest.mark.parametrize(("method", "tail"), [
    (KeId.MODP_768, "a63a3620ffffffffffffffff"),   # RFC 2409 §6.1
    (KeId.MODP_1024, "ece65381ffffffffffffffff"),  # RFC 2409 §6.2
    (KeId.MODP_1536, "ca237327ffffffffffffffff"),  # RFC 3526 §2
    (KeId.MODP_6144, "6dcc4024ffffffffffffffff"),  # RFC 3526 §5
    (KeId.MODP_8192, "98edd3dfffffffffffffffff"),  # RFC 3526 §6
])
def test_legacy_modp_primes(method: KeId, tail: str) -> None:
    p = modp_prime(method)
    assert hex(p).endswith(tail)
    assert _probably_prime(p, rounds=1) and _probably_prime((p - 1) // 2, rounds=1)  # safe prime


@pytest.mark.parametrize("method", list(DECOY_ORDER))
def test_every_decoy_has_a_real_public_value(method: KeId) -> None:
    assert can_generate(method)
    value = public_value(method)
    assert value is not None and len(value) > 0
    if method in (KeId.MODP_768, KeId.MODP_1024, KeId.MODP_1536, KeId.MODP_8192):
        y = int.from_bytes(value, "big")
        assert len(value) * 8 == modp_prime(method).bit_length() and 2 <= y <= modp_prime(method) - 2


def test_groups_without_a_value_say_so() -> None:
    assert public_value(KeId.MODP_1024_160) is None and not can_generate(KeId.MODP_1024_160)


def test_catalog_names_are_profile_names() -> None:
    cat = candidates()
    labels = [c.label for cs in cat.values() for c in cs]
    assert len(labels) == len(set(labels))
    assert "AES_GCM_16-256" in labels and "3DES_CBC" in labels and "MODP_768" in labels
    assert {c.profile_name for c in cat["ENCR"]} >= {"AES_GCM_16/256", "TRIPLE_DES", "CHACHA20_POLY1305"}


def _result(accepted: set[str]) -> ScanResult:
    result = ScanResult("gw", ("192.0.2.1", 500))
    for cs in candidates().values():
        for c in cs:
            status = "accepted" if c.label in accepted else "refused"
            result.observations.append(Observation(c, status, "test"))  # type: ignore[arg-type]
    return result


def test_verdicts_come_from_the_profile_rules() -> None:
    profile = load_profile("pci-dss-4")
    by_label = {c.label: c for cs in candidates().values() for c in cs}
    verdict, findings = transform_verdict(profile, by_label["3DES_CBC"])
    assert verdict == "fail" and findings[0].rule == "crypto.ike.encr"
    assert findings[0].sources == profile.rule("crypto.ike.encr").sources
    assert transform_verdict(profile, by_label["AES_GCM_16-256"])[0] == "pass"
    assert transform_verdict(profile, by_label["MODP_2048"])[0] == "warn"


def test_report_exit_codes() -> None:
    profile = load_profile("pci-dss-4")
    strong = judge(_result({"AES_GCM_16-256", "PRF_HMAC_SHA2_384", "ECP_384"}), profile)
    # every observation carries evidence "test", which is no IKEv2 answer: the scan could not run
    assert strong.status == "failed" and strong.exit_code == 2
    answered = _result({"AES_GCM_16-256", "PRF_HMAC_SHA2_384", "ECP_384"})
    first = answered.observations[0].candidate
    answered.observations[0] = Observation(first, "refused", "NO_PROPOSAL_CHOSEN")
    assert judge(answered, profile).exit_code == 0
    weak = _result({"3DES_CBC", "PRF_HMAC_SHA1", "HMAC_SHA1_96", "MODP_1024"})
    weak.observations[0] = Observation(weak.observations[0].candidate, "refused", "NO_PROPOSAL_CHOSEN")
    report = judge(weak, profile)
    assert report.exit_code == 1
    assert {f.rule for f in report.errors} == {"crypto.ike.encr", "crypto.ike.prf", "crypto.ike.integ",
                                               "crypto.ike.ke"}
    doc = report.to_json()
    assert doc["schema"] == "ikeguard-scan/1" and doc["exit_code"] == 1


def test_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[ike]\nencr = ["AES_GCM_16/256"]\nke = ["ECP_384", "CURVE25519"]\n')
    policy = load_policy(path)
    result = _result({"AES_GCM_16-256", "AES_CBC-128", "ECP_384"})
    messages = sorted(f.message for f in policy_findings(result, policy))
    assert messages == ["AES_CBC-128 is accepted but not in the policy",
                        "CURVE_25519 is in the policy but refused"]
    path.write_text('[esp]\nencr = ["AES_GCM_16/256"]\nke = ["ECP_384"]\n')
    assert load_policy(path) == {"ESP_ENCR": frozenset({(20, 256)}), "ESP_KE": frozenset({(20, None)})}
    for bad in ('[ike]\nencr = ["AES_FOO"]\n', '[ike]\ncipher = []\n', "not toml [", '[ah]\nencr = []\n',
                '[esp]\nprf = ["HMAC_SHA2_256"]\n'):
        path.write_text(bad)
        with pytest.raises(PolicyFileError):
            load_policy(path)


def test_target_and_rate_parsing() -> None:
    assert parse_target("192.0.2.1") == ("192.0.2.1", 500)
    assert parse_target("192.0.2.1:4500") == ("192.0.2.1", 4500)
    assert parse_target("[2001:db8::1]:500") == ("2001:db8::1", 500)
    assert parse_target("2001:db8::1") == ("2001:db8::1", 500)
    assert parse_rate("10/s") == 10.0 and parse_rate("2.5") == 2.5
    for bad in ("0/s", "fast", "-1"):
        with pytest.raises(click.BadParameter):
            parse_rate(bad)


def test_ikev1_sa_round_trip_and_hostile_answers() -> None:
    from ikeguard.scan import ikev1

    sa = ikev1._sa(0, [("AES-256", "SHA2-256", "PSK", 14), ("3DES", "SHA1", "RSA", 2)])
    icookie = bytes(range(8))
    message = ikev1._message(ikev1.EXCH_MAIN, ikev1.PT_SA, sa, icookie)
    walked = ikev1._walk(message, icookie)
    assert walked is not None and walked[0] == ikev1.EXCH_MAIN
    assert ikev1._chosen(walked[1][0][1]) == "AES-256/SHA2-256/PSK/MODP-2048"
    assert ikev1._walk(message, bytes(8)) is None  # not an answer to us
    assert ikev1._walk(message[:-1], icookie) is None  # length disagrees
    assert ikev1._walk(message[:30], icookie) is None
    assert ikev1._chosen(b"\x00" * 5) is None
