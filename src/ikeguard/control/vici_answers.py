"""charon's vici answers built from the gateway's own views (``sas``/``conns`` of the service layer).

Field names, value spellings and section layout are those of strongSwan's vici plugin (``list-sa``,
``list-conn``, ``ike-updown``/``child-updown`` in ``libcharon/plugins/vici/README.md``), so ``swanctl`` and
scripts on the ``vici`` package print ikeguard's SAs as they print charon's: states in upper case
(``ESTABLISHED``, ``INSTALLED``), algorithms by strongSwan's names (``AES_GCM_16``, ``PRF_HMAC_SHA2_384``,
``ECP_384``), SPIs as hex (IKE 16 digits, ESP 8), times as seconds relative to now, flags (``initiator``,
``nat-local``, ``encap``) present only when set. What ikeguard has no notion of is left out rather than
invented (``reqid`` is ``0``: the userspace data plane has no reqids; no virtual IPs, no task lists).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ikeguard.wire.iana import EsnId, KeId, ProtocolId, name_of
from ikeguard.wire.proposal_string import ProposalSpec, parse_proposal

IKE_STATES = {
    "created": "CREATED", "init-sent": "CONNECTING", "half-open": "CONNECTING", "auth-sent": "CONNECTING",
    "established": "ESTABLISHED", "rekeying": "REKEYING", "rekeyed": "REKEYED", "deleting": "DELETING",
    "closed": "DESTROYING",
}
CHILD_STATES = {
    "creating": "INSTALLING", "installed": "INSTALLED", "rekeying": "REKEYING", "rekeyed": "REKEYED",
    "deleting": "DELETING", "deleted": "DELETED",
}
AUTH_CLASS = {"psk": "pre-shared key", "pubkey": "public key", "eap": "EAP"}  # charon's auth_class_names


def _yes(flag: object) -> str | None:
    return "yes" if flag else None


def _epoch(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _seconds_until(text: object, now: float) -> int | None:
    at = _epoch(text)
    return None if at is None else max(0, int(at - now))


def _seconds_since(text: object, now: float) -> int | None:
    at = _epoch(text)
    return None if at is None else max(0, int(now - at))


def _spec(text: object, protocol: ProtocolId) -> ProposalSpec | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_proposal(text, protocol)
    except ValueError:
        return None


def algorithm_fields(text: object, protocol: ProtocolId) -> dict[str, Any]:
    """``encr-alg``/``encr-keysize``/``integ-alg``/``integ-keysize``/``prf-alg``/``dh-group``(/``esn``) of a
    negotiated proposal in swanctl syntax, with strongSwan's algorithm names."""
    spec = _spec(text, protocol)
    if spec is None:
        return {}
    out: dict[str, Any] = {}
    if spec.encr:
        out["encr-alg"] = spec.encr[0].name
        if spec.encr[0].key_length:
            out["encr-keysize"] = spec.encr[0].key_length
    integ = [t for t in spec.integ if t.id != 0]
    if integ:
        out["integ-alg"] = integ[0].name
    if spec.prf:
        out["prf-alg"] = spec.prf[0].name
    if spec.ke:
        out["dh-group"] = spec.ke[0].name
    for t in spec.addke:  # RFC 9370 additional key exchanges, as strongSwan 6 lists them (ake1..ake7)
        if t.id != 0:
            out[f"ake{int(t.type) - 5}"] = name_of(KeId, int(t.id))
    if protocol != ProtocolId.IKE and spec.esn and spec.esn[0].id == EsnId.ESN:
        out["esn"] = "1"
    return out


def child_section(child: Mapping[str, Any], *, encap: bool, now: float) -> dict[str, Any]:
    """One ``child-sas`` entry of ``list-sa`` from a ``sas --json`` Child SA."""
    section: dict[str, Any] = {
        "name": child.get("name", ""),
        "uniqueid": child.get("uniqueid", 0),
        "reqid": 0,
        "state": CHILD_STATES.get(str(child.get("state", "")), str(child.get("state", "")).upper()),
        "mode": str(child.get("mode", "tunnel")).upper(),
        "protocol": "ESP",
        "encap": _yes(encap),
        "spi-in": child.get("spi_in"),
        "spi-out": child.get("spi_out"),
        **algorithm_fields(child.get("proposal"), ProtocolId.ESP),
        "bytes-in": child.get("bytes_in", 0),
        "packets-in": child.get("packets_in", 0),
        "bytes-out": child.get("bytes_out", 0),
        "packets-out": child.get("packets_out", 0),
        "rekey-time": _seconds_until(child.get("rekey_at"), now),
        "life-time": _seconds_until(child.get("expires_at"), now),
        "install-time": _seconds_since(child.get("installed_at"), now) or 0,
        "local-ts": list(child.get("local_ts", [])),
        "remote-ts": list(child.get("remote_ts", [])),
    }
    return section


def ike_section(sa: Mapping[str, Any], *, now: float, children: bool = True) -> dict[str, Any]:
    """The section under the IKE SA's name in ``list-sa`` (``children=False``: as in ``ike-updown``)."""
    section: dict[str, Any] = {
        "uniqueid": sa.get("uniqueid", 0),
        "version": 2,
        "state": IKE_STATES.get(str(sa.get("state", "")), str(sa.get("state", "")).upper()),
        "local-host": sa.get("local_addr", ""),
        "local-port": sa.get("local_port", 500),
        "local-id": sa.get("local_id", ""),
        "remote-host": sa.get("remote_addr", ""),
        "remote-port": sa.get("remote_port", 500),
        "remote-id": sa.get("remote_id", ""),
        "initiator": _yes(sa.get("initiator")),
        "initiator-spi": sa.get("spi_i", ""),
        "responder-spi": sa.get("spi_r", ""),
        "nat-local": _yes(sa.get("nat_local")),
        "nat-remote": _yes(sa.get("nat_remote")),
        "nat-any": _yes(sa.get("nat_local") or sa.get("nat_remote")),
        **algorithm_fields(sa.get("proposal"), ProtocolId.IKE),
        "established": _seconds_since(sa.get("established_at"), now),
        "rekey-time": _seconds_until(sa.get("rekey_at"), now),
        "reauth-time": _seconds_until(sa.get("reauth_at"), now),
    }
    if children:
        encap = bool(sa.get("encap"))
        section["child-sas"] = {
            f"{c.get('name', '')}-{c.get('uniqueid', 0)}": child_section(c, encap=encap, now=now)
            for c in sa.get("children", [])
        }
    return section


def _seconds(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def conn_section(name: str, conn: Any, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The section under a connection's name in ``list-conn``, from the configuration model's connection."""
    local, remote = conn.local, conn.remote
    local_auth: dict[str, Any] = {"class": AUTH_CLASS.get(local.auth, local.auth),
                                  "id": (status or {}).get("local_id") or local.id or "%any",
                                  "certs": list(local.certs)}
    remote_auth: dict[str, Any] = {"class": AUTH_CLASS.get(remote.auth, remote.auth), "id": remote.id,
                                   "revocation": remote.revocation, "cacerts": list(remote.cacerts)}
    children = {
        cname: {
            "mode": child.mode.upper(),
            "rekey_time": _seconds(child.rekey_time),
            "rekey_bytes": _seconds(child.rekey_bytes),
            "rekey_packets": _seconds(child.rekey_packets),
            "dpd_action": child.dpd_action,
            "close_action": child.close_action,
            "start_action": child.start_action,
            "esp_proposals": list(child.esp_proposals),
            "local-ts": list(child.local_ts),
            "remote-ts": list(child.remote_ts),
        }
        for cname, child in conn.children.items()
    }
    return {
        "local_addrs": list(conn.local_addrs) or ["%any"],
        "remote_addrs": list(conn.remote_addrs),
        "version": "IKEv2",
        "reauth_time": _seconds(conn.reauth_time),
        "rekey_time": _seconds(conn.rekey_time),
        "unique": conn.unique.upper() if conn.unique != "no" else "UNIQUE_NO",
        "dpd_delay": _seconds(conn.dpd_delay),
        "proposals": list(conn.proposals),
        "local-1": local_auth,
        "remote-1": remote_auth,
        "children": children,
    }


def event_section(event: Mapping[str, Any]) -> dict[str, Any]:
    """An IKE SA section from an audit record alone (the SA may be gone when ``ike.down`` is recorded)."""
    details = event.get("details") or {}

    def split(endpoint: object) -> tuple[str, int | None]:
        text = str(endpoint or "")
        if text.startswith("["):
            host, _, port = text[1:].partition("]:")
        else:
            host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        return host, int(port) if port.isdigit() else None

    local_host, local_port = split(event.get("local_addr"))
    remote_host, remote_port = split(event.get("remote_addr"))
    return {
        "uniqueid": event.get("ike_uniqueid") or 0,
        "version": 2,
        "state": "DELETING" if event.get("event") == "ike.down" else "ESTABLISHED",
        "local-host": local_host,
        "local-port": local_port,
        "local-id": event.get("local_id", ""),
        "remote-host": remote_host,
        "remote-port": remote_port,
        "remote-id": event.get("remote_id", ""),
        "initiator-spi": details.get("spi_i"),
        "responder-spi": details.get("spi_r"),
        **algorithm_fields(event.get("proposal"), ProtocolId.IKE),
    }


LOG_GROUPS = {"ike": "IKE", "auth": "IKE", "dpd": "IKE", "proposal": "IKE", "ts": "CHD", "child": "CHD",
              "config": "CFG", "waiver": "CFG", "peer": "CFG", "cert": "CFG", "revocation": "CFG",
              "admin": "DMN", "audit": "DMN", "dos": "NET", "clock": "DMN"}


def log_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """A ``log``/``control-log`` event for one audit record: group, level 1, thread 0, the SA, the text."""
    name = str(event.get("event", ""))
    parts = [name, str(event.get("outcome", ""))]
    if event.get("connection"):
        parts.append(f"conn={event['connection']}")
    if event.get("remote_id") or event.get("remote_addr"):
        parts.append(f"peer={event.get('remote_id') or event.get('remote_addr')}")
    text = " ".join(parts) + (f": {event['reason']}" if event.get("reason") else "")
    return {
        "group": LOG_GROUPS.get(name.split(".", 1)[0], "DMN"),
        "level": 1,
        "thread": 0,
        "ikesa-name": event.get("connection") or None,
        "ikesa-uniqueid": event.get("ike_uniqueid"),
        "msg": text,
    }
