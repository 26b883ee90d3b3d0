"""RFC 7512 URIs for token keys (crypto/pkcs11_key.py): accepted, refused, no PIN in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikeguard.crypto.pkcs11_key import (
    DEFAULT_MODULE,
    TokenError,
    module_for_name,
    parse_uri,
    read_pin,
    safe_uri_text,
)


def test_parse_uri_reads_token_object_id_and_query() -> None:
    uri = parse_uri("pkcs11:token=gw%20one;object=ike;id=%01%02;type=private"
                    "?module-path=/usr/lib/x.so&pin-source=file:/etc/pin")
    assert uri.token == {"token": "gw one"} and uri.label == "ike" and uri.key_id == b"\x01\x02"
    assert uri.module_path == "/usr/lib/x.so" and uri.pin_source == "file:/etc/pin"
    assert parse_uri("pkcs11:serial=42;object=k").module_path == DEFAULT_MODULE


@pytest.mark.parametrize(("text", "message"), [
    ("pkcs11:token=gw;object=k?pin-value=123456", "pin-value is not allowed"),
    ("pkcs11:object=k", "name the token"),
    ("pkcs11:token=gw", "name the key"),
    ("pkcs11:token=gw;object=k;colour=red", "unknown path attribute"),
    ("pkcs11:token=gw;object=k;type=cert", "type must be private"),
])
def test_parse_uri_refuses(text: str, message: str) -> None:
    with pytest.raises(TokenError, match=message) as failed:
        parse_uri(text)
    assert "123456" not in str(failed.value)


def test_module_name_is_looked_up_and_module_path_wins(tmp_path: Path) -> None:
    """RFC 7512 §2.4: module-name names the module without lib prefix and extension; it was ignored before
    (the default module was used whatever module-name said)."""
    (tmp_path / "libvendor_p11.so").write_bytes(b"")
    found = module_for_name("vendor_p11", (Path("/nonexistent"), tmp_path))
    assert found == str(tmp_path / "libvendor_p11.so")
    assert parse_uri("pkcs11:token=gw;object=k?module-name=softhsm2").module_path == \
        "/usr/lib/softhsm/libsofthsm2.so"  # Debian softhsm2 (packaging/system-packages.txt)
    assert parse_uri("pkcs11:token=gw;object=k?module-name=tpm2_pkcs11").module_path.endswith(
        "/pkcs11/libtpm2_pkcs11.so")  # Debian libtpm2-pkcs11-1
    assert parse_uri("pkcs11:token=gw;object=k?module-name=absent&module-path=/opt/x.so").module_path == \
        "/opt/x.so"
    with pytest.raises(TokenError, match=r"no PKCS#11 module libabsent_module\.so in /usr/lib/"):
        parse_uri("pkcs11:token=gw;object=k?module-name=absent_module")
    with pytest.raises(TokenError, match="not a module name"):
        parse_uri("pkcs11:token=gw;object=k?module-name=../../tmp/evil")


def test_pin_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pin").write_text("4321\n")
    assert read_pin("file:pin", tmp_path) == "4321"
    assert read_pin(str(tmp_path / "pin")) == "4321"
    monkeypatch.setenv("TOKEN_PIN", "8765")
    assert read_pin("env:TOKEN_PIN") == "8765"
    monkeypatch.delenv("TOKEN_PIN")
    with pytest.raises(TokenError, match="TOKEN_PIN is not set"):
        read_pin("env:TOKEN_PIN")
    assert safe_uri_text("pkcs11:token=a;object=b?pin-value=1") == "pkcs11:token=a;object=b"
