"""Files that hold secrets (PSK ``secret_file``s, private keys) must be readable by their owner only.

The one rule (``owner_only``) is shared by ``psk.file-mode`` (checks/secrets.py) and ``key.file-mode``
(here): a private key the gateway signs IKE AUTH with (RFC 7296 §2.15) or authenticates to the SIEM with
(RFC 5425 §5.3) is as secret as a pre-shared key (PCI DSS 4.0.1 8.3.2, 3.6.1; NIST SP 800-53 IA-5).
Missing or unreadable files are left to ``files.present``; the mode of the file a symlink points to is
what counts (it is what a reader gets).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ikeguard.policy.checks.base import CheckContext, Outcome, Target, conn_target, register
from ikeguard.policy.profile import Rule

GROUP_OTHER = 0o077


def owner_only(path: Path) -> tuple[int, str | None] | None:
    """(permission bits, problem or None) of a secret file; None when it cannot be stat'ed."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & GROUP_OTHER:
        return mode, f"group/other can access the file (mode {mode:04o}; expected 0600 or stricter)"
    return mode, None


def is_token_key(value: str) -> bool:
    """``local.key`` names a key in a PKCS#11 token (RFC 7512 ``pkcs11:`` URI), not a file."""
    return value.strip().lower().startswith("pkcs11:")


def load_private_key(path: Path) -> PrivateKeyTypes | None:
    """An unencrypted PEM (PKCS#8, PKCS#1, SEC 1) or DER private key, or None (unreadable, encrypted, not a
    key). The key object never leaves the policy code in a finding: only its public half is described."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        return None


def private_key_files(ctx: CheckContext) -> Iterator[tuple[str, str, Target | None]]:
    """(key path, file as written, quarantine target) of every private key the config names."""
    model = ctx.config.model
    for name, conn in model.connections.items():
        if conn.local.key and not is_token_key(conn.local.key):
            yield f"connections.{name}.local.key", conn.local.key, conn_target(name)
        if conn.local_2 is not None and conn.local_2.key and not is_token_key(conn.local_2.key):
            yield f"connections.{name}.local-2.key", conn.local_2.key, conn_target(name)  # EAP-TLS
    for i, sink in enumerate(model.audit.sinks):
        if sink.key:
            yield f"audit.sinks[{i}].key", sink.key, None
    for name, server in model.radius.servers.items():
        if server.key:  # RadSec client key
            yield f"radius.servers.{name}.key", server.key, None


@register("key_file_mode")
def check_key_file_mode(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Every private key file the config names: mode 0600 or stricter (like a PSK secret_file)."""
    out: list[Outcome] = []
    for scope, relative, target in private_key_files(ctx):
        found = owner_only(ctx.config.resolve(relative))
        if found is None:
            continue  # files.present reports it
        mode, problem = found
        out.append(Outcome(scope, problem is None, f"{relative} (mode {mode:04o})",
                           "" if problem is None else f"private key: {problem}", file=ctx.file,
                           target=target))
    return out
