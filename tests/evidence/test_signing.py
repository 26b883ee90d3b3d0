"""Issue 24: the manifest signed with an operator's key besides the trail's seal: a PEM key file, or a key
inside a PKCS#11 token (SoftHSM2, generated non-extractable in the token); `evidence verify --signer`
pins the signer and names a pack signed by another key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.control.cli import main
from tests.harness.tokens import softhsm_token

from .conftest import MonthLab


def _spki_sha256(public_pem: bytes) -> str:
    key = serialization.load_pem_public_key(public_pem)
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _verify(pack: Path, lab: MonthLab, *extra: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(main, ["evidence", "verify", str(pack), "--key", str(lab.key_file), "--json",
                                       *extra])
    return result.exit_code, json.loads(result.output)


def test_manifest_signed_with_a_pem_key(month_lab: MonthLab, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    key_file = tmp_path / "signer.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    fpr = _spki_sha256(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    start, end = month_lab.period
    pack = tmp_path / "pack"
    made = CliRunner().invoke(main, ["evidence", "-c", str(month_lab.config), "--from", start, "--to", end,
                                     "-o", str(pack), "--sign-key", str(key_file)])
    assert made.exit_code == 0, made.output
    sig = json.loads((pack / "manifest.sig.json").read_text())
    assert sig["algorithm"] == "ecdsa-sha256" and sig["signer_spki_sha256"] == fpr
    code, report = _verify(pack, month_lab, "--signer", fpr)
    assert code == 0 and any(fpr in n for n in report["notes"]), report  # type: ignore[union-attr]
    code, report = _verify(pack, month_lab, "--signer", "00" * 32)
    assert code == 1 and report["problems"] == [f"manifest.sig.json: signed by key {fpr}, not {'00' * 32}"]
    other = ec.generate_private_key(ec.SECP384R1())  # someone re-signs with their own key: pinning names it
    sig["signature"] = other.sign((pack / "manifest.json").read_bytes(), ec.ECDSA(hashes.SHA256())).hex()
    (pack / "manifest.sig.json").write_text(json.dumps(sig))
    code, report = _verify(pack, month_lab)
    assert code == 1 and report["problems"] == ["manifest.json: signature invalid (manifest changed after "
                                                "signing, or another key)"], report


def test_manifest_signed_inside_a_pkcs11_token(month_lab: MonthLab, tmp_path: Path) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("evidence-signer", "ec:secp384r1")
    assert not info.extractable and info.sensitive
    (month_lab.config.parent / "token.pin").write_text(token.pin + "\n")
    start, end = month_lab.period
    pack = tmp_path / "pack.zip"
    argv = [sys.executable, "-m", "ikeguard", "evidence", "-c", str(month_lab.config), "--from", start,
            "--to", end, "-o", str(pack), "--sign-key", token.uri("evidence-signer")]
    made = subprocess.run(argv,  # the token's module is loaded in the command's process, never in ours
                          env={**os.environ, **token.env}, capture_output=True, text=True, timeout=300,
                          check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    fpr = _spki_sha256(info.public_pem)
    code, report = _verify(pack, month_lab, "--signer", fpr)
    assert code == 0, report
