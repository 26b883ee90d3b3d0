"""vici credential and policy commands: ``list-certs``, ``load-cert``, ``load-key``, ``list-policies`` and
``redirect``, answered as charon's vici plugin answers them (strongSwan ``src/libcharon/plugins/vici/``
``vici_cred.c``/``vici_query.c``/``vici_control.c`` and the vici README, read, not copied) so ``swanctl
--list-certs``, ``--load-creds`` and ``--list-pols`` print the same way.

ikeguard's credentials are its configuration: certificates, keys and trust anchors are named in
``gateway.toml`` and checked by the compliance profile at load and reload. So:

* ``list-certs`` streams a ``list-cert`` event per certificate the running plan uses (our certificates with
  ``has_privkey``, trust anchors flagged ``CA``), DER in ``data`` as charon sends it;
* ``load-cert``/``load-key`` *map* when the credential is one the configuration already holds (a
  ``swanctl --load-creds`` over the same swanctl directory succeeds and changes nothing); anything else is
  refused with the place in the configuration to put it, since a credential loaded beside the profile
  check would bypass it. Key material is never logged nor echoed;
* ``list-policies`` streams a ``list-policy`` event per trap policy (children with ``start_action = trap``);
  ikeguard has no pass/drop (shunt) policies;
* ``get-keys`` names the keys the configuration holds, ``unload-key`` is refused (swanctl --load-creds
  unloads what its directory lacks: the gateway's key stays); shared secrets: ``control.vici_load_creds``;
* ``get-pools`` gives each ``[pools]`` pool's base, size and online/offline leases;
* ``redirect`` sends the selected peers to another gateway (RFC 5685 §5, ``engine.tasks.redirect``).

File reads run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.control.server import maybe_await
from ikeguard.control.vici_codec import Section, text
from ikeguard.pki.loading import PkiLoadError, load_certificates


class ViciServer(Protocol):
    """What these commands read of the vici server: the running gateway (its plan)."""

    gateway: Any


class _Client(Protocol):
    """A connected vici client: events go to it if it registered them."""

    user: str

    def event(self, name: str, message: dict[str, Any]) -> None: ...

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _configured(server: ViciServer) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(our certificates, trust anchors) of the running plan; reads the anchor files (worker thread)."""
    plan = server.gateway.plan
    config = plan.config
    own: dict[bytes, x509.Certificate] = {}
    for certs in plan.certificates.values():
        for cert in certs:
            own.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    files: list[Path] = [config.resolve(a.cacert) for a in config.model.authorities.values()]
    for conn in config.model.connections.values():
        files += [config.resolve(ref) for ref in conn.remote.cacerts if ref not in config.model.authorities]
    anchors: dict[bytes, x509.Certificate] = {}
    for path in dict.fromkeys(files):
        try:
            for cert in load_certificates(path.read_bytes()):
                anchors.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
        except (OSError, PkiLoadError, ValueError):
            continue  # the plan refused to load without it; a file changed since is not ours to list
    return list(own.values()), [c for d, c in anchors.items() if d not in own]


async def list_certs(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``list-certs`` (filters ``type`` X509/ANY, ``flag`` NONE/CA/ANY, ``subject``): one event each."""
    kind = text(message.get("type")).upper() or "ANY"
    flag = text(message.get("flag")).upper() or "ANY"
    subject = text(message.get("subject"))
    if kind not in ("ANY", "X509"):
        return {}
    own, anchors = await asyncio.to_thread(_configured, server)
    for certs, cert_flag, has_key in ((own, "NONE", "yes"), (anchors, "CA", None)):
        if flag not in ("ANY", cert_flag):
            continue
        for cert in certs:
            if subject and subject not in cert.subject.rfc4514_string():
                continue
            event: dict[str, Any] = {"type": "X509", "flag": cert_flag,
                                     "data": cert.public_bytes(serialization.Encoding.DER)}
            if has_key:
                event["has_privkey"] = has_key
            client.event("list-cert", event)
    return {}


async def load_cert(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``load-cert``: success when the certificate is one the configuration holds, else refused."""
    kind = text(message.get("type")).upper()
    data = message.get("data")
    if kind != "X509" or not isinstance(data, bytes):
        return {"success": "no", "errmsg": f"ikeguard loads X.509 certificates only (type {kind or '?'})"}
    try:
        der = load_certificates(data)[0].public_bytes(serialization.Encoding.DER)
    except (PkiLoadError, ValueError, IndexError):
        return {"success": "no", "errmsg": "not a certificate"}
    own, anchors = await asyncio.to_thread(_configured, server)
    if any(c.public_bytes(serialization.Encoding.DER) == der for c in [*own, *anchors]):
        return {"success": "yes"}
    where = ("[authorities.NAME] cacert or connections.NAME.remote.cacerts"
             if text(message.get("flag")).upper() == "CA" else "connections.NAME.local.certs")
    return {"success": "no", "errmsg": "ikeguard takes certificates from its configuration, checked by the "
                                       f"profile: add it as {where} and reload"}


async def load_key(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``load-key``: success when the key belongs to one of our configured certificates, else refused."""
    data = message.get("data")
    if not isinstance(data, bytes):
        return {"success": "no", "errmsg": "no key data"}
    try:
        key = (serialization.load_pem_private_key(data, password=None) if b"-----BEGIN" in data
               else serialization.load_der_private_key(data, password=None))
        public = key.public_key().public_bytes(*_SPKI)
    except (ValueError, TypeError):
        return {"success": "no", "errmsg": "not an unencrypted private key ikeguard can read"}
    finally:
        del data
    own, _ = await asyncio.to_thread(_configured, server)
    if any(c.public_key().public_bytes(*_SPKI) == public for c in own):
        return {"success": "yes", "id": _key_id(public)}
    return {"success": "no", "errmsg": "ikeguard takes private keys from its configuration "
                                       "(connections.NAME.local.key, 0600): add it there and reload"}


def _key_id(spki: bytes) -> str:
    """A key's id as swanctl keeps it between ``load-key`` and ``get-keys``: SHA-1 of its public key info."""
    import hashlib

    return hashlib.sha1(spki, usedforsecurity=False).hexdigest()


async def get_keys(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``get-keys``: the ids of our private keys (swanctl --load-creds unloads the ones it did not load)."""
    own, _ = await asyncio.to_thread(_configured, server)
    return {"keys": sorted({_key_id(c.public_key().public_bytes(*_SPKI)) for c in own})}


async def unload(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``unload-key``: refused; the configuration's keys stay until a reload."""
    return {"success": "no", "errmsg": "ikeguard's credentials come from its configuration: remove them "
                                       "there and reload"}


async def list_policies(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``list-policies`` (``trap``/``drop``/``pass`` flags, ``child`` filter): the trap policies."""
    wanted = text(message.get("child"))
    if text(message.get("trap")) != "yes":
        return {}  # no shunt (pass/drop) policies exist in ikeguard
    for conn_name, conn in server.gateway.plan.config.model.connections.items():
        for child_name, child in conn.children.items():
            if child.start_action != "trap" or (wanted and wanted != child_name):
                continue
            client.event("list-policy", {f"{conn_name}/{child_name}": {
                "child": child_name, "ike": conn_name, "mode": child.mode.upper(),
                "local-ts": list(child.local_ts), "remote-ts": list(child.remote_ts)}})
    return {}


def pools_answer(server: ViciServer, message: Section) -> dict[str, Any]:
    """``get-pools`` (``leases = yes``, ``name`` filter): base, size, online and offline per pool, as charon
    answers (``swanctl --list-pools [--leases]`` prints them)."""
    import ipaddress

    wanted = text(message.get("name"))
    with_leases = text(message.get("leases")) == "yes"
    model = server.gateway.plan.config.model
    status = server.gateway.pools() if hasattr(server.gateway, "pools") else {}
    out: dict[str, Any] = {}
    for name, pool in model.pools.items():
        if wanted and wanted != name:
            continue
        net = ipaddress.ip_network(pool.addrs, strict=False)
        skip = 1 if net.version == 4 and net.prefixlen < 31 else 0  # network and broadcast are never leased
        leases = status.get(name, [])
        entry: dict[str, Any] = {"base": str(net.network_address + skip),
                                 "size": str(net.num_addresses - 2 * skip),
                                 "online": str(sum(1 for _, _, on in leases if on)),
                                 "offline": str(sum(1 for _, _, on in leases if not on))}
        if with_leases:
            entry["leases"] = {str(i): {"address": a, "identity": u, "status": "online" if on else "offline"}
                               for i, (a, u, on) in enumerate(leases)}
        out[name] = entry
    return out


async def redirect(server: ViciServer, message: Section, client: _Client) -> dict[str, Any]:
    """``redirect`` (``swanctl --redirect``): RFC 5685 §5 redirect of the established IKE SAs selected by
    ``ike`` (name), ``ike-id``, ``peer-ip`` or ``peer-id`` to ``gateway``, as charon's vici_control.c."""
    gateway = text(message.get("gateway"))
    if not gateway:
        return {"success": "no", "errmsg": "missing target gateway"}
    ike_id = text(message.get("ike-id") or message.get("ike_id")).strip()
    if ike_id and not ike_id.isdigit():
        return {"success": "no", "errmsg": "ike-id must be a number"}
    peer_ip = text(message.get("peer-ip"))
    selection = {"conn": text(message.get("ike")) or None, "uniqueid": int(ike_id) if ike_id else None,
                 "peer": text(message.get("peer-id")) or None}
    reason = f"redirected by admin {client.user} (vici)"
    if peer_ip:
        try:
            within = _addresses(peer_ip)
        except ValueError:
            return {"success": "no", "errmsg": f"peer-ip {peer_ip!r} is not an address, subnet or range"}
        views = await maybe_await(server.gateway.sas(conn=selection["conn"], peer=selection["peer"]))
        uids = [int(s["uniqueid"]) for s in views
                if within(s.get("remote_addr", "")) and selection["uniqueid"] in (None, s.get("uniqueid"))]
        if not uids:
            return {"success": "no", "errmsg": f"redirect: no IKE SA with a peer in {peer_ip}"}
        count = 0
        for uid in uids:
            count += await maybe_await(server.gateway.redirect(gateway, uniqueid=uid, reason=reason))
        return {"success": "yes", "matches": str(count)}
    if not any(v is not None for v in selection.values()):
        return {"success": "no", "errmsg": "select IKE SAs with ike, ike-id, peer-ip or peer-id"}
    count = await maybe_await(server.gateway.redirect(gateway, **selection, reason=reason))
    return {"success": "yes", "matches": str(count)}


def _addresses(spec: str) -> Any:
    """charon's peer-ip selector: an address, a subnet (CIDR) or a range (``a-b``) -> membership test."""
    import ipaddress

    if "-" in spec:
        first, last = (ipaddress.ip_address(p.strip()) for p in spec.split("-", 1))
        return lambda a: _in_range(a, first, last)
    net = ipaddress.ip_network(spec.strip(), strict=False)
    return lambda a: _in_net(a, net)


def _in_net(address: str, net: Any) -> bool:
    import ipaddress

    try:
        return bool(ipaddress.ip_address(address) in net)
    except ValueError:
        return False


def _in_range(address: str, first: Any, last: Any) -> bool:
    import ipaddress

    try:
        a = ipaddress.ip_address(address)
    except ValueError:
        return False
    return bool(a.version == first.version and first <= a <= last)
