"""What a check is: a function from (rule, context) to outcomes, registered under the rule's ``check`` name.

``NOT_IMPLEMENTED`` is the honest list of checks the product cannot perform yet: their rules are reported
"not implemented" and fail the profile (never "pass"). Remove an entry when the feature lands.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ikeguard.policy.loader import LoadedConfig
    from ikeguard.policy.profile import Profile, Rule

# ("connection", name) or ("peer", connection, peer id): what quarantine disables.
Target = tuple[str, ...]
# What a check looked at: the configuration text (static), files it names read now (certificates, keys, CRLs,
# secrets), or the running gateway (asked over its control socket; without it the rule is "not verified").
CheckKind = Literal["config", "files", "runtime"]


@dataclass(frozen=True)
class Outcome:
    """One observation of a check: where (key path), pass or not, the offending value, why."""

    scope: str
    ok: bool
    value: str | None = None
    message: str = ""
    warning: bool = False
    file: str | None = None
    target: Target | None = None
    not_verified: bool = False  # the check could not judge (e.g. a runtime rule without the gateway)


@dataclass
class CheckContext:
    """Inputs of every check: the loaded config, the profile, the time (never read from a clock)."""

    config: LoadedConfig
    profile: Profile
    now: dt.datetime
    cache: dict[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, Any] | None = None  # the running gateway's answer (control socket "compliance")
    open_tokens: bool = False  # `check` only: log in to the PKCS#11 tokens local.key names

    @property
    def file(self) -> str:
        """The config file, for findings."""
        return str(self.config.path)


CheckFn = Callable[["Rule", CheckContext], list[Outcome]]
REGISTRY: dict[str, CheckFn] = {}

NOT_IMPLEMENTED: dict[str, str] = {
    "ml_dsa_auth": "ML-DSA signatures are not available in the crypto backend",
}

# Where each check is enforced besides the report (docs/compliance.md prints this table).
ENFORCED_AT: dict[str, tuple[str, ...]] = {
    "transforms": ("load", "wire", "report"),
    "aead_integrity": ("load", "wire", "report"),
    "addke_required": ("load", "wire", "report"),
    "by_construction": ("by construction", "report"),
    "revocation_runtime": ("IKE_AUTH", "reauthentication", "report"),
    "auth_signature": ("IKE_AUTH", "report"),
    "siem_delivery": ("run", "report"),
}
DEFAULT_ENFORCED_AT = ("load", "report")

CHECK_KINDS: dict[str, CheckKind] = {
    "files_present": "files", "key_file_mode": "files", "psk_file_mode": "files", "psk_entropy": "files",
    "psk_binding": "files", "cert_key": "files", "cert_signature_hash": "files", "cert_validity": "files",
    "cert_usage": "files", "cert_chain": "files", "crl_current": "files", "siem_tls": "files",
    "key_match": "files", "key_age": "files", "crypto_module": "runtime",
    "revocation_runtime": "runtime", "siem_delivery": "runtime", "quantum_exposure": "runtime",
}


def check_kind(check: str) -> CheckKind:
    """What a check looks at (``config`` unless listed in ``CHECK_KINDS``)."""
    return CHECK_KINDS.get(check, "config")


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: make a function the implementation of check ``name``."""

    def wrap(fn: CheckFn) -> CheckFn:
        REGISTRY[name] = fn
        return fn

    return wrap


def conn_target(name: str) -> Target:
    """Quarantine target for a connection."""
    return ("connection", name)


def enforced_at(check: str) -> tuple[str, ...]:
    """Where a check is enforced (empty when not implemented)."""
    if check in NOT_IMPLEMENTED:
        return ()
    return ENFORCED_AT.get(check, DEFAULT_ENFORCED_AT)
