"""Check implementations, registered by name; importing this package fills the registry."""

from ikeguard.policy.checks import crypto, keyfiles, keys, pki, runtime, secrets, settings
from ikeguard.policy.checks.base import (
    NOT_IMPLEMENTED,
    REGISTRY,
    CheckContext,
    Outcome,
    Target,
    enforced_at,
)

__all__ = ["NOT_IMPLEMENTED", "REGISTRY", "CheckContext", "Outcome", "Target", "crypto", "enforced_at",
           "keyfiles", "keys", "pki", "runtime", "secrets", "settings"]
