"""Checks on pre-shared keys and on the files the config names. Secret values never leave this module:
outcomes carry estimated bit counts and names, not key material."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

from ikeguard.policy.checks.base import CheckContext, Outcome, Target, conn_target, register
from ikeguard.policy.checks.keyfiles import owner_only
from ikeguard.policy.identity import IdentityKind, parse_identity
from ikeguard.policy.inventory import identity_key
from ikeguard.policy.profile import Rule


def estimate_psk_bits(text: str) -> int:
    """Upper-bound entropy estimate of a PSK in strongSwan encoding: ``0x`` hex (4 bits/digit), ``0s``
    base64 (6 bits/char), else text (length x log2 of the character classes used)."""
    if text.startswith("0x"):
        return 4 * len(text[2:].replace(":", ""))
    if text.startswith("0s"):
        return 6 * len(text[2:].rstrip("="))
    classes = 0
    classes += 26 if any(c.islower() for c in text) else 0
    classes += 26 if any(c.isupper() for c in text) else 0
    classes += 10 if any(c.isdigit() for c in text) else 0
    classes += 33 if any(not c.isalnum() for c in text) else 0
    return int(len(text) * math.log2(classes)) if classes else 0


def _psk_targets(ctx: CheckContext, ids: list[str]) -> list[Target | None]:
    keys = {identity_key(parse_identity(i)) for i in ids}
    targets: list[Target | None] = [
        conn_target(n) for n, c in ctx.config.model.connections.items()
        if c.remote.auth == "psk" and identity_key(parse_identity(c.remote.id)) in keys]
    return targets or [None]


@register("psk_binding")
def check_psk_binding(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """One secret per remote identity, exact ids only (no patterns, no sharing)."""
    model = ctx.config.model
    local_keys = {identity_key(parse_identity(c.local.id)) for c in model.connections.values() if c.local.id}
    owner: dict[object, str] = {}
    out: list[Outcome] = []
    for name, secret in model.secrets.ike.items():
        scope = f"secrets.ike.{name}.ids"
        problem = None
        parsed = [parse_identity(i) for i in secret.ids]
        remote = [p for p in parsed if identity_key(p) not in local_keys]
        if not secret.ids:
            if not rule.params.get("allow_without_ids", False):
                problem = "a secret without ids would authenticate any peer (only profile baseline allows it)"
        elif any(p.is_pattern or p.kind is IdentityKind.ANY for p in parsed):
            problem = "a secret bound to a pattern or %any would be shared by every matching peer"
        elif len(remote) > 1:
            problem = f"one secret shared by {len(remote)} remote identities; give each its own"
        else:
            for p in remote:
                other = owner.setdefault(identity_key(p), name)
                if other != name:
                    problem = f"{p.text!r} already has secret {other!r}: one secret per identity"
        if problem:
            out.extend(Outcome(scope, False, ", ".join(secret.ids) or "(none)", problem, file=ctx.file,
                               target=t) for t in _psk_targets(ctx, secret.ids))
        else:
            out.append(Outcome(scope, True, ", ".join(secret.ids)))
    return out


def _secret_text(ctx: CheckContext, name: str) -> str | None:
    secret = ctx.config.model.secrets.ike[name]
    if secret.secret is not None:
        return secret.secret.get_secret_value()
    assert secret.secret_file is not None
    try:
        return ctx.config.resolve(secret.secret_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


@register("psk_entropy")
def check_psk_entropy(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Estimated PSK entropy at least ``min_bits`` (unreadable files are reported by files.present)."""
    need = int(rule.params["min_bits"])
    out: list[Outcome] = []
    for name, secret in ctx.config.model.secrets.ike.items():
        text = _secret_text(ctx, name)
        if text is None:
            continue
        bits = estimate_psk_bits(text)
        scope = f"secrets.ike.{name}"
        ok = bits >= need
        out.extend(Outcome(scope, ok, f"~{bits} bits ({len(text)} characters)",
                           "" if ok else f"expected at least {need} random bits", file=ctx.file, target=t)
                   for t in _psk_targets(ctx, secret.ids))
    return out


@register("psk_inline")
def check_psk_inline(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """No ``secret = ...`` in the config file."""
    out: list[Outcome] = []
    for name, secret in ctx.config.model.secrets.ike.items():
        scope = f"secrets.ike.{name}.secret"
        if secret.secret is not None:
            out.extend(Outcome(scope, False, "(hidden)", "secret written inline in the config file",
                               file=ctx.file, target=t) for t in _psk_targets(ctx, secret.ids))
        else:
            out.append(Outcome(f"secrets.ike.{name}.secret_file", True, secret.secret_file))
    return out


@register("psk_file_mode")
def check_psk_file_mode(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """secret_file readable by its owner only (mode 0600 or stricter)."""
    out: list[Outcome] = []
    for name, secret in ctx.config.model.secrets.ike.items():
        if secret.secret_file is None:
            continue
        found = owner_only(ctx.config.resolve(secret.secret_file))  # the rule key.file-mode applies too
        if found is None:
            continue  # files.present reports it
        mode, problem = found
        out.append(Outcome(f"secrets.ike.{name}.secret_file", problem is None,
                           f"{secret.secret_file} (mode {mode:04o})",
                           "" if problem is None else f"secret file: {problem}", file=ctx.file))
    return out


@register("psk_allowed")
def check_psk_allowed(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """PSK authentication forbidden by the profile."""
    if rule.params.get("allowed", True):
        return [Outcome("", True)]
    out: list[Outcome] = []
    for name, conn in ctx.config.model.connections.items():
        for side in ("local", "remote"):
            auth = getattr(conn, side).auth
            ok = auth != "psk"
            out.append(Outcome(f"connections.{name}.{side}.auth", ok, auth,
                               "" if ok else "pre-shared key authentication is not allowed", file=ctx.file,
                               target=conn_target(name)))
    for name in ctx.config.model.secrets.ike:
        out.append(Outcome(f"secrets.ike.{name}", False, "(hidden)", "pre-shared keys are not allowed",
                           file=ctx.file))
    return out


def named_files(ctx: CheckContext) -> Iterator[tuple[str, str]]:
    """(key path, relative path) of every file the config reads."""
    model = ctx.config.model
    for name, auth in model.authorities.items():
        yield f"authorities.{name}.cacert", auth.cacert
        for i, crl in enumerate(auth.crls):
            yield f"authorities.{name}.crls[{i}]", crl
    for name, conn in model.connections.items():
        for i, cert in enumerate(conn.local.certs):
            yield f"connections.{name}.local.certs[{i}]", cert
        if conn.local.key:
            yield f"connections.{name}.local.key", conn.local.key
        for i, ca in enumerate(conn.remote.cacerts):
            if ca not in model.authorities:
                yield f"connections.{name}.remote.cacerts[{i}]", ca
    for i, sink in enumerate(model.audit.sinks):
        for key in ("ca", "cert", "key"):
            value = getattr(sink, key)
            if value:
                yield f"audit.sinks[{i}].{key}", value
    for name, secret in model.secrets.ike.items():
        if secret.secret_file:
            yield f"secrets.ike.{name}.secret_file", secret.secret_file


def file_problem(path: Path) -> str | None:
    """Why a file cannot be used, or None."""
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable"
    return None


@register("files_present")
def check_files_present(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Every named file exists and is readable."""
    out: list[Outcome] = []
    for scope, relative in named_files(ctx):
        problem = file_problem(ctx.config.resolve(relative))
        target = conn_target(scope.split(".")[1]) if scope.startswith("connections.") else None
        out.append(Outcome(scope, problem is None, relative, problem or "", file=ctx.file, target=target))
    return out
