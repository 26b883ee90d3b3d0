"""libreswan's ipsec.conf in `ikeguard import` (issue 23): both starters' proposal syntaxes translate into
swanctl proposals (libreswan's aes_gcm256-sha2_384;dh20, dh numbers, '+' alternatives, AEAD and classic
split), unknown algorithms are reported, libreswan files are told from strongSwan's. Whole files: the
corpus (test_import_corpus.py)."""

from __future__ import annotations

import pytest

from ikeguard.policy.importers.ipsec_conf import parse_ipsec_conf
from ikeguard.policy.importers.libreswan import detect_flavour, translate_proposal


@pytest.mark.parametrize(("text", "ike", "expected"), [
    ("aes256gcm16-prfsha384-ecp384!", True, ["aes256gcm16-prfsha384-ecp384"]),
    ("aes256-sha256-modp2048,aes128-sha1-modp1024", True, ["aes256-sha256-modp2048", "aes128-sha1-modp1024"]),
    ("aes_gcm256-sha2_384;dh20", True, ["aes256gcm16-prfsha384-ecp384"]),
    ("aes_gcm_c256-sha2_512;dh21", True, ["aes256gcm16-prfsha512-ecp521"]),
    ("aes256-sha2_256;modp2048", True, ["aes256-sha256-modp2048"]),
    ("aes+aes_gcm-sha2+sha1;dh14+dh19", True,
     ["aes256-aes128-sha256-sha1-modp2048-ecp256",
      "aes256gcm16-aes128gcm16-prfsha256-prfsha1-modp2048-ecp256"]),
    ("chacha20_poly1305-sha2_512;dh31", True, ["chacha20poly1305-prfsha512-curve25519"]),
    ("aes_gcm256", False, ["aes256gcm16"]),
    ("aes_gcm256-null;dh21", False, ["aes256gcm16-ecp521"]),
    ("aes256-sha2_256", False, ["aes256-sha256"]),
    ("3des-md5", False, ["3des-md5"]),
])
def test_proposals_of_both_starters_translate(text: str, ike: bool, expected: list[str]) -> None:
    proposals, problems = translate_proposal(text, ike=ike)
    assert (proposals, problems) == (expected, [])


def test_unknown_algorithm_is_reported() -> None:
    proposals, problems = translate_proposal("aes256-whirlpool-modp2048", ike=True)
    assert proposals == ["aes256-sha256-modp2048"] and problems == ["unknown algorithm 'whirlpool' in "
                                                                    "'aes256-whirlpool-modp2048'"]


def test_libreswan_is_recognised() -> None:
    assert detect_flavour(parse_ipsec_conf("conn a\n    ikev2=insist\n")) == "libreswan"
    assert detect_flavour(parse_ipsec_conf("conn a\n    ike=aes_gcm256-sha2_384;dh20\n")) == "libreswan"
    assert detect_flavour(parse_ipsec_conf("conn a\n"), "version 2.0\nconn a\n") == "libreswan"
    assert detect_flavour(parse_ipsec_conf("conn a\n    ike=aes256gcm16-prfsha384-ecp384!\n")) == "strongswan"
