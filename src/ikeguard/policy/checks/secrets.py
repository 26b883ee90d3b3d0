"""Checks on pre-shared keys and on the files the config names. Secret values never leave this module:
outcomes carry estimated bit counts and names, not key material."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Iterator
from pathlib import Path

from ikeguard.policy.checks.base import CheckContext, Outcome, Target, conn_target, register
from ikeguard.policy.checks.keyfiles import is_token_key, owner_only
from ikeguard.policy.identity import Identity, IdentityKind, parse_identity
from ikeguard.policy.inventory import identity_key
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.profile import Rule
from ikeguard.policy.psk import DecodedPsk, PskError, read_secret, resolve_psks, unquote_setting


def estimate_psk_bits(psk: DecodedPsk, text: str) -> int:
    """Upper-bound entropy estimate of a decoded PSK (``policy.psk.decode_psk``, strongSwan encoding):
    binary keys written as ``0x`` hex or ``0s`` base64 count 8 bits per octet; text counts its length x
    log2 of the character classes used."""
    if psk.encoding != "text":
        return 8 * len(psk.value)
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


def _secret_problem(ids: list[str], parsed: list[Identity], remote: list[Identity],
                    allow_without_ids: bool) -> str | None:
    if not ids:
        if not allow_without_ids:
            return "a secret without ids would authenticate any peer (only profile baseline allows it)"
        return None
    if any(p.is_pattern or p.kind is IdentityKind.ANY for p in parsed):
        return "a secret bound to a pattern or %any would be shared by every matching peer"
    if not remote:
        return ("the secret names only this gateway's own id(s): it is no peer's key, and strongSwan would "
                "try it for every peer (a group key); name the one peer it belongs to")
    if len(remote) > 1:
        return f"one secret shared by {len(remote)} remote identities; give each its own"
    return None


@register("psk_binding")
def check_psk_binding(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """One secret per remote identity, exact ids only (no patterns, no sharing), and no layout in which one
    peer's secret can serve another peer's connection (``policy.psk`` rules, the ones the gateway runs
    with; RFC 7296 §2.15): a secret naming only our own id, a secret without ids for several peers, a PSK
    connection whose remote id is a pattern or %any, two peers resolving to one secret, two peers' secrets
    with the same value, or a secret that cannot be decoded."""
    model = ctx.config.model
    local_keys = {identity_key(parse_identity(c.local.id)) for c in model.connections.values() if c.local.id}
    owner: dict[object, str] = {}
    out: list[Outcome] = []
    allow = bool(rule.params.get("allow_without_ids", False))
    for name, secret in model.secrets.ike.items():
        scope = f"secrets.ike.{name}.ids"
        parsed = [parse_identity(i) for i in secret.ids]
        remote = [p for p in parsed if identity_key(p) not in local_keys]
        problem = _secret_problem(secret.ids, parsed, remote, allow)
        if problem is None and len(remote) == 1:
            other = owner.setdefault(identity_key(remote[0]), name)
            if other != name:
                problem = f"{remote[0].text!r} already has secret {other!r}: one secret per identity"
        if problem:
            out.extend(Outcome(scope, False, ", ".join(secret.ids) or "(none)", problem, file=ctx.file,
                               target=t) for t in _psk_targets(ctx, secret.ids))
        else:
            out.append(Outcome(scope, True, ", ".join(secret.ids) or "(none)"))
    choices = resolve_psks(ctx.config, model.connections,
                           allow_group_key=bool(rule.params.get("allow_group_key", False)))
    for conn_name, choice in choices.items():
        scope = f"connections.{conn_name}.remote.id"
        remote_id = model.connections[conn_name].remote.id
        if choice.secret is None:
            out.append(Outcome(scope, False, remote_id, choice.problem or "", file=ctx.file,
                               target=conn_target(conn_name)))
        elif choice.group:
            out.append(Outcome(scope, True, f"{remote_id} -> secret {choice.secret!r}",
                               f"group key (allowed by this profile only): every peer that knows secret "
                               f"{choice.secret!r} can authenticate as any identity this connection accepts",
                               warning=True, file=ctx.file, target=conn_target(conn_name)))
        else:
            out.append(Outcome(scope, True, f"{remote_id} -> secret {choice.secret!r}"))
    out.extend(_value_outcomes(ctx))
    return out


def _value_outcomes(ctx: CheckContext) -> list[Outcome]:
    """Every secret decodes (strongSwan's 0x/0s rules), and no two secrets hold the same key."""
    out: list[Outcome] = []
    secrets = ctx.config.model.secrets.ike
    by_digest: dict[bytes, list[str]] = {}
    for name, secret in secrets.items():
        try:
            psk = read_secret(ctx.config, name)
        except PskError as exc:
            out.extend(Outcome(exc.key, False, "(hidden)", f"{exc.reason} (binding not verified)",
                               file=ctx.file, target=t) for t in _psk_targets(ctx, secret.ids))
            continue
        # a keyed digest: equal keys are found without keeping the keys themselves around
        digest = hmac.new(b"ikeguard psk.binding", psk.value, hashlib.sha256).digest()
        by_digest.setdefault(digest, []).append(name)
    for names in by_digest.values():
        if len(names) < 2:
            continue
        message = (f"secrets {', '.join(names)} hold the same key: the peer of each could authenticate as "
                   "the others; give every peer its own key")
        for n in names:
            out.extend(Outcome(f"secrets.ike.{n}", False, "(hidden)", message, file=ctx.file, target=t)
                       for t in _psk_targets(ctx, secrets[n].ids))
    return out


def _secret_text(ctx: CheckContext, name: str) -> str | None:
    """The secret as written (after unquoting), for the character-class estimate of text keys."""
    secret = ctx.config.model.secrets.ike[name]
    if secret.secret is not None:
        return secret.secret.get_secret_value()
    assert secret.secret_file is not None
    try:
        text = ctx.config.resolve(secret.secret_file).read_text(encoding="utf-8").strip()
        return unquote_setting(text, f"secrets.ike.{name}.secret_file")
    except (OSError, UnicodeDecodeError, PskError):
        return None


@register("psk_entropy")
def check_psk_entropy(rule: Rule, ctx: CheckContext) -> list[Outcome]:
    """Estimated PSK entropy at least ``min_bits``, on the key as the gateway decodes it (unreadable files
    are reported by files.present, undecodable ones by psk.binding and here)."""
    need = int(rule.params["min_bits"])
    out: list[Outcome] = []
    for name, secret in ctx.config.model.secrets.ike.items():
        scope = f"secrets.ike.{name}"
        try:
            psk = read_secret(ctx.config, name)
        except PskError as exc:
            if exc.unreadable:
                continue
            out.extend(Outcome(scope, False, "(hidden)", f"{exc.reason}: entropy not verified", file=ctx.file,
                               target=t) for t in _psk_targets(ctx, secret.ids))
            continue
        text = _secret_text(ctx, name) or ""
        bits = estimate_psk_bits(psk, text)
        ok = bits >= need
        size = (f"{len(text)} characters" if psk.encoding == "text"
                else f"{len(psk.value)} octets, {psk.encoding}")
        out.extend(Outcome(scope, ok, f"~{bits} bits ({size})",
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
    """secret_file readable by its owner only (mode 0600 or stricter): PSKs and our EAP passwords."""
    out: list[Outcome] = []
    secrets = ctx.config.model.secrets
    files = [(f"secrets.ike.{n}.secret_file", s.secret_file) for n, s in secrets.ike.items()]
    files += [(f"secrets.eap.{n}.secret_file", s.secret_file) for n, s in secrets.eap.items()]
    for key, secret_file in files:
        if secret_file is None:
            continue
        found = owner_only(ctx.config.resolve(secret_file))  # the rule key.file-mode applies too
        if found is None:
            continue  # files.present reports it
        mode, problem = found
        out.append(Outcome(key, problem is None,
                           f"{secret_file} (mode {mode:04o})",
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
    return named_files_of(ctx.config)


def named_files_of(config: LoadedConfig) -> Iterator[tuple[str, str]]:
    """(key path, relative path) of every file a loaded configuration reads (inventories aside)."""
    model = config.model
    for name, auth in model.authorities.items():
        yield f"authorities.{name}.cacert", auth.cacert
        for i, crl in enumerate(auth.crls):
            yield f"authorities.{name}.crls[{i}]", crl
    for name, conn in model.connections.items():
        for i, cert in enumerate(conn.local.certs):
            yield f"connections.{name}.local.certs[{i}]", cert
        if conn.local.key and not is_token_key(conn.local.key):  # a token key is no file
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
    for name, eap in model.secrets.eap.items():
        yield f"secrets.eap.{name}.secret_file", eap.secret_file
    for name, conn in model.connections.items():
        if conn.local_2 is not None:  # EAP-TLS: our TLS client certificate and key
            for i, cert in enumerate(conn.local_2.certs):
                yield f"connections.{name}.local-2.certs[{i}]", cert
            if conn.local_2.key and not is_token_key(conn.local_2.key):
                yield f"connections.{name}.local-2.key", conn.local_2.key
    for name, server in model.radius.servers.items():
        for key in ("ca", "cert", "key"):  # RadSec
            value = getattr(server, key)
            if value:
                yield f"radius.servers.{name}.{key}", value


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
