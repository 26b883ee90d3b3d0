"""Issue 18 item 1: `ikeguard check` judges a ``local.key`` in a PKCS#11 token (RFC 7512 URI) through the
token: it logs in as `run` does and compares the token's public key with the certificate's
(``key.matches-cert``). Wrong PIN and a missing token are one finding line naming the problem, never the PIN.
SoftHSM2 token in the test's directory (its own SOFTHSM2_CONF), key generated non-extractable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.ikeguard_conf import IkgAuthority, IkgConnection, IkgLocal, IkgRemote, gateway_toml
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.tokens import Pkcs11Token, softhsm_token

pytestmark = [pytest.mark.interop]

RULE = "key.matches-cert"


def _check(tmp_path: Path, token: Pkcs11Token, cert: Path, *, uri: str,
           pin: str) -> tuple[dict[str, Any], str]:
    conf = tmp_path / "gw"
    conf.mkdir(exist_ok=True)
    (conf / "gw.pem").write_bytes(cert.read_bytes())
    (conf / "ca.pem").write_bytes((tmp_path / "pki" / "ca.pem").read_bytes())
    (conf / "token.pin").write_text(pin + "\n")
    (conf / "token.pin").chmod(0o600)
    conn = IkgConnection(local_addrs=["192.0.2.1"], remote_addrs=["198.51.100.1"],
                         local=IkgLocal("pubkey", GW_FQDN, certs=["gw.pem"], key=uri),
                         remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"]))
    path = conf / "gateway.toml"
    path.write_text(gateway_toml([conn], profile="pci-dss-4",
                                 authorities=[IkgAuthority("lab", cacert="ca.pem")]))
    done = subprocess.run([sys.executable, "-m", "ikeguard", "check", "-c", str(path), "--json"],
                          env={**os.environ, **token.env}, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout), done.stdout + done.stderr


def test_check_logs_in_to_the_token_and_matches_its_key_with_the_certificate(tmp_path: Path) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    other = token.generate("other", "ec:secp384r1")
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab token CA")
    right = tool.issue_public("gw", ca, f"C=US, O=ss-lab, CN={GW_FQDN}", info.public_pem, sans=[GW_FQDN])
    wrong = tool.issue_public("gw-other", ca, f"C=US, O=ss-lab, CN={GW_FQDN}", other.public_pem,
                              sans=[GW_FQDN])
    uri = token.uri("ike")

    data, _ = _check(tmp_path, token, right, uri=uri, pin=token.pin)
    assert data["rules"][RULE] == "pass"
    assert not [f for f in data["findings"] if f["rule"] == RULE]

    data, text = _check(tmp_path, token, wrong, uri=uri, pin=token.pin)
    assert data["rules"][RULE] == "fail"
    [finding] = [f for f in data["findings"] if f["rule"] == RULE]
    assert "the token's key does not belong to the certificate" in finding["message"]
    assert token.pin not in text


@pytest.mark.parametrize("problem", ["wrong-pin", "missing-token"])
def test_check_reports_wrong_pin_and_missing_token_in_one_line(problem: str, tmp_path: Path) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ike", "ec:secp384r1")
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab token CA")
    cert = tool.issue_public("gw", ca, f"C=US, O=ss-lab, CN={GW_FQDN}", info.public_pem, sans=[GW_FQDN])
    uri = token.uri("ike") if problem == "wrong-pin" else \
        token.uri("ike").replace(f"token={token.label}", "token=absent")
    pin = "999999" if problem == "wrong-pin" else token.pin
    data, text = _check(tmp_path, token, cert, uri=uri, pin=pin)
    assert data["rules"][RULE] == "fail"
    [finding] = [f for f in data["findings"] if f["rule"] == RULE]
    expected = {"wrong-pin": "the token key cannot be used: PKCS#11 login failed: wrong PIN",
                "missing-token": "the token key cannot be used: PKCS#11 token not found: "
                                 "pkcs11:token=absent;object=ike"}[problem]
    assert finding["message"] == expected, finding
    assert "\n" not in finding["message"]
    assert "999999" not in text and token.pin not in text
