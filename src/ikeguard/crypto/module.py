"""What the cryptographic modules in use are, stated as facts: never a claim of FIPS 140 validation.

ikeguard computes IKE (and ESP on the userspace data plane) with the ``cryptography`` package, which links its
own OpenSSL; the audit trail's TLS link to the SIEM uses Python's ``ssl`` module (the system OpenSSL); with
``dataplane = "xfrm"`` ESP runs in the Linux kernel's crypto API. Whether a module is FIPS 140-validated is a
property of the exact build, its CMVP certificate and its operational environment, which ikeguard cannot
establish: the report says which modules run, whether a FIPS provider is active, and that validation is not
verified (NIST SP 800-77r1 requires validated modules for US federal use; FIPS 140-3).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import cryptography

NOT_CLAIMED = (
    "FIPS 140 validation is not claimed and not verified by ikeguard: show the CMVP certificate of "
    "each module in use and that it runs as its security policy requires"
)


def _cryptography_openssl() -> tuple[str, bool]:
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl

    return str(rust_openssl.openssl_version_text()), bool(rust_openssl.is_fips_enabled())


def _kernel_fips() -> bool | None:
    try:
        return Path("/proc/sys/crypto/fips_enabled").read_text().strip() == "1"
    except OSError:
        return None


def module_facts(dataplane: str | None = None) -> dict[str, Any]:
    """The modules this process would use (``dataplane``: the configured data plane, for ESP)."""
    openssl, fips = _cryptography_openssl()
    facts: dict[str, Any] = {
        "ike": {
            "module": f"cryptography {cryptography.__version__}",
            "openssl": openssl,
            "fips_provider_active": fips,
        },
        "audit_tls": {"module": "Python ssl", "openssl": ssl.OPENSSL_VERSION},
        "validation": NOT_CLAIMED,
    }
    if dataplane == "xfrm":
        facts["esp"] = {"module": "Linux kernel crypto API (xfrm)", "kernel_fips_mode": _kernel_fips()}
    else:
        facts["esp"] = {"module": "as IKE (userspace data plane)" if dataplane != "none" else "none"}
    return facts


def describe(facts: dict[str, Any]) -> str:
    """One line for the report."""
    ike = facts.get("ike", {})
    esp = facts.get("esp", {})
    fips = "active" if ike.get("fips_provider_active") else "not active"
    text = (
        f"IKE: {ike.get('module')} with {ike.get('openssl')} (FIPS provider {fips}); "
        f"audit TLS: {facts.get('audit_tls', {}).get('openssl')}; ESP: {esp.get('module')}"
    )
    if "kernel_fips_mode" in esp:
        text += f" (kernel fips_enabled: {esp['kernel_fips_mode']})"
    return text
