"""The example mutated one setting at a time: each mutation is rejected with the right rule id and source,
refuse mode raises the same message `run` prints, and quarantine disables only the offender."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikeguard.policy.enforce import enforce, load_and_enforce
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import load_profile
from ikeguard.policy.report import evaluate
from tests.policy.conftest import edit

GW = "processor-gateway.toml"
HEX256 = "0x" + "3f9a" * 16


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[Path], None]
    rule: str
    source: str
    profile: str = "pci-dss-4"


def _gw(old: str, new: str) -> Callable[[Path], None]:
    return lambda d: edit(d / GW, old, new)


def _add_secret(secret_line: str, file_text: str | None = None) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        if file_text is not None:
            (d / "legacy.psk").write_text(file_text)
            (d / "legacy.psk").chmod(0o600)
        with (d / GW).open("a") as fh:
            fh.write(f'\n[secrets.ike.legacy]\nids = ["legacy.merchants.processor.example"]\n{secret_line}\n')
    return apply


def _child_12h(d: Path) -> None:
    edit(d / GW, 'rekey_time = "1h"', 'rekey_time = "12h"')
    edit(d / GW, 'life_time = "2h"', 'life_time = "13h"')


IKE = 'proposals = ["aes256gcm16-prfsha384-ecp384"]'
ESP = 'esp_proposals = ["aes256gcm16-ecp384"]'
MUTATIONS = [
    Mutation("3DES", _gw(IKE, 'proposals = ["3des-sha256-ecp384"]'), "crypto.ike.encr", "RFC 8247 §2.1"),
    Mutation("AES-CBC with HMAC-SHA1", _gw(ESP, 'esp_proposals = ["aes256-sha1-ecp384"]'),
             "crypto.esp.integ", "RFC 8221 §6"),
    Mutation("MD5", _gw(IKE, 'proposals = ["aes256gcm16-prfmd5-ecp384"]'), "crypto.ike.prf", "RFC 8247 §2.2"),
    Mutation("modp1024", _gw(IKE, 'proposals = ["aes256gcm16-prfsha384-modp1024"]'), "crypto.ike.ke",
             "RFC 8247 §2.4"),
    Mutation("modp2048 where forbidden", _gw(IKE, 'proposals = ["aes256gcm16-prfsha384-modp2048"]'),
             "crypto.ike.ke", "BSI TR-02102-3 §3.2.4 Tab. 6", profile="bsi-tr-02102-3"),
    Mutation("modp2048 under cnsa-1", _gw(IKE, 'proposals = ["aes256gcm16-prfsha384-modp2048"]'),
             "crypto.ike.ke", "RFC 9206 §4", profile="cnsa-1"),
    Mutation("PFS off", _gw(ESP, 'esp_proposals = ["aes256gcm16"]'), "pfs.required",
             "NIST SP 800-77r1 §7.2.6"),
    Mutation("IKE lifetime 48 h", _gw('rekey_time = "12h"', 'rekey_time = "48h"'), "lifetime.ike.max",
             "NIST SP 800-77r1 Table 1"),
    Mutation("Child lifetime 12 h", _child_12h,
             "lifetime.child.max", "NIST SP 800-77r1 Table 1"),
    Mutation("8-character PSK", _add_secret('secret_file = "legacy.psk"', "Passw0rd\n"), "psk.entropy",
             "RFC 7296 §2.15"),
    Mutation("inline secret under pci-dss-4", _add_secret(f'secret = "{HEX256}"'), "psk.inline",
             "NIST SP 800-53 IA-5"),
    Mutation("retention 30 days", _gw("retention_days = 365", "retention_days = 30"), "audit.retention",
             "PCI DSS 4.0.1 10.5.1"),
    Mutation("no DPD", _gw('dpd_delay = "30s"\n', ""), "dpd.enabled", "RFC 7296 §2.4"),
    Mutation("wildcard id with a fixed remote subnet",
             _gw('remote_ts = ["%peer"]', 'remote_ts = ["10.20.0.0/16"]'),
             "seg.wildcard-fixed-ts", "RFC 7296 §2.9"),
    Mutation("two inventory peers with overlapping subnets",
             lambda d: edit(d / "merchants.toml", 'remote_ts = ["10.20.2.0/24"]',
                            'remote_ts = ["10.20.1.128/25"]'),
             "seg.inventory-overlap", "ikeguard contract: inventory subnets must not overlap"),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_is_rejected_with_rule_and_source(mutation: Mutation, example_copy: Path,
                                                   now: dt.datetime) -> None:
    profile = load_profile(mutation.profile)
    before = evaluate(load_config(example_copy / GW), profile, now=now)
    assert before.rule_status(mutation.rule) in ("pass", "not_applicable")

    mutation.apply(example_copy)
    config = load_config(example_copy / GW, profile_override=mutation.profile)
    after = evaluate(config, profile, now=now)
    failing = [r for r in after.by_status("fail") if r.rule.id == mutation.rule]
    assert failing, f"{mutation.rule} did not fail: {[r.rule.id for r in after.by_status('fail')]}"
    assert mutation.source in failing[0].rule.sources
    assert not after.passed

    with pytest.raises(ConfigError) as info:  # on_violation = "refuse": what `ikeguard run` prints
        enforce(config, now=now, profile=profile)
    mine = [f for f in info.value.findings if f.rule == mutation.rule]
    assert mine and mutation.source in mine[0].sources
    assert mutation.rule in str(info.value) and mutation.source in str(info.value)


def test_modp2048_is_only_a_sunset_warning_under_pci(example_copy: Path, now: dt.datetime) -> None:
    edit(example_copy / GW, IKE, 'proposals = ["aes256gcm16-prfsha384-modp2048"]')
    report = evaluate(load_config(example_copy / GW), now=now)
    (warning,) = [r for r in report.results if r.rule.id == "crypto.ike.ke" and r.status == "warn"]
    assert "sunset 2030-12-31" in warning.message


def test_inline_secret_is_accepted_by_nist_but_never_shown(example_copy: Path, now: dt.datetime) -> None:
    _add_secret(f'secret = "{HEX256}"')(example_copy)
    report = evaluate(load_config(example_copy / GW), load_profile("nist-800-77r1"), now=now)
    assert report.rule_status("psk.inline") == "pass"  # the rule is not part of the nist profile
    assert HEX256 not in repr(report) and HEX256[2:] not in str(report.to_json())


def test_load_and_enforce_refuses_with_the_same_findings(example_copy: Path, now: dt.datetime) -> None:
    edit(example_copy / GW, IKE, 'proposals = ["3des-sha256-ecp384"]')
    with pytest.raises(ConfigError) as info:
        load_and_enforce(example_copy / GW, now=now)
    assert any(f.rule == "crypto.ike.encr" and f.value == "3des-sha256-ecp384" for f in info.value.findings)


def test_an_ike_sa_that_reauthenticates_instead_of_rekeying_is_judged_by_its_reauth_time(
        example_copy: Path, now: dt.datetime) -> None:
    """ipsec.conf's default (reauth=yes) imports as rekey_time 0 + reauth_time: the range warning and the
    maximum judge the same lifetime (before: the range rule read rekey_time 0 and warned)."""
    old, new = 'rekey_time = "12h"\nreauth_time = "24h"', 'rekey_time = "0"\nreauth_time = "12h"'
    edit(example_copy / GW, old, new)
    report = evaluate(load_config(example_copy / GW), now=now)
    assert report.rule_status("lifetime.ike.range") == "pass"
    assert report.rule_status("lifetime.ike.max") == "pass"
    edit(example_copy / GW, 'reauth_time = "12h"', 'reauth_time = "2h"')
    report = evaluate(load_config(example_copy / GW), now=now)
    (warning,) = [r for r in report.results if r.rule.id == "lifetime.ike.range" and r.status == "warn"]
    assert warning.scope.endswith(".reauth_time") and warning.value == "2h"
