"""JSON description of static SAs and policies for the standalone userspace data plane
(``python -m ikeguard.dataplane.userspace CONFIG.json``): tests, benchmarks, and manual keying."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from ikeguard.crypto import registry
from ikeguard.crypto.registry import EncrAlgorithm, IntegAlgorithm
from ikeguard.dataplane.base import DataPlaneError, SaConfig, SaDirection, SaEndpoint
from ikeguard.policy.ts import TrafficSelector, resolve


def endpoint(text: str) -> SaEndpoint:
    """``192.0.2.1:4500`` / ``[2001:db8::1]:4500`` / a bare address (port 4500)."""
    host, port = text, 4500
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 4500
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    return SaEndpoint(ipaddress.ip_address(host), port)


def selectors(items: Sequence[Any]) -> tuple[TrafficSelector, ...]:
    """Configured selector strings (swanctl syntax) to selectors; an item may also be the selector's fields
    ``[version, start, end, protocol, start_port, end_port]`` (what :func:`sa_to_json` writes: exact)."""
    if items and not isinstance(items[0], str):
        return tuple(TrafficSelector(*(int(v) for v in item)) for item in items)
    return resolve([str(i) for i in items], own_address=None)


def selector_fields(ts: Sequence[TrafficSelector]) -> list[list[int]]:
    """Selectors as their fields (read back exactly by :func:`selectors`)."""
    return [[t.version, t.start, t.end, t.protocol, t.start_port, t.end_port] for t in ts]


def _endpoint_text(ep: SaEndpoint) -> str:
    return f"[{ep.address}]:{ep.port}" if ep.address.version == 6 else f"{ep.address}:{ep.port}"


def sa_to_json(sa: SaConfig) -> dict[str, Any]:
    """One SA as the JSON :func:`sa_from_json` reads (transform ids, selector fields): how ``ikeguard run``
    with workers hands an SA to the machine's one plane (service/workerplane.py). Holds the keys."""
    return {"spi": sa.spi, "direction": sa.direction.value, "encr_id": sa.encr_id,
            "encr_key_bits": sa.encr_key_bits, "integ_id": sa.integ_id, "encr_key": sa.encr_key.hex(),
            "integ_key": sa.integ_key.hex(), "source": _endpoint_text(sa.source),
            "destination": _endpoint_text(sa.destination), "local_ts": selector_fields(sa.local_ts),
            "remote_ts": selector_fields(sa.remote_ts), "esn": sa.esn, "encap": sa.encap, "mode": sa.mode,
            "replay_window": sa.replay_window, "ike": sa.ike_uniqueid, "child": sa.child_uniqueid,
            "child_name": sa.child_name, "soft_bytes": sa.soft_bytes, "hard_bytes": sa.hard_bytes,
            "soft_packets": sa.soft_packets, "hard_packets": sa.hard_packets, "seq_out": sa.seq_out,
            "replay_top": sa.replay_top}


def _transforms(obj: dict[str, Any]) -> tuple[int, int | None, int]:
    """(ENCR id, key bits, INTEG id) from names (``encr``, ``integ``) or numbers (``encr_id`` ...)."""
    if "encr_id" in obj:
        bits = obj.get("encr_key_bits")
        return int(obj["encr_id"]), None if bits is None else int(bits), int(obj.get("integ_id", 0))
    _, encr = registry.by_name(str(obj["encr"]))
    if not isinstance(encr, EncrAlgorithm):
        raise DataPlaneError(f"{obj['encr']} is not an encryption algorithm")
    integ_id = 0
    if obj.get("integ"):
        _, integ = registry.by_name(str(obj["integ"]))
        if not isinstance(integ, IntegAlgorithm):
            raise DataPlaneError(f"{obj['integ']} is not an integrity algorithm")
        integ_id = int(integ.id)
    return int(encr.id), encr.key_bits, integ_id


def sa_from_json(obj: dict[str, Any]) -> SaConfig:
    """One SA from its JSON description; raises DataPlaneError with the reason."""
    try:
        encr_id, key_bits, integ_id = _transforms(obj)
        spi = obj["spi"]
        return SaConfig(
            spi=int(spi, 0) if isinstance(spi, str) else int(spi),
            direction=SaDirection(obj["direction"]),
            encr_id=encr_id,
            encr_key_bits=key_bits,
            integ_id=integ_id,
            encr_key=bytearray.fromhex(obj["encr_key"]),
            integ_key=bytearray.fromhex(obj.get("integ_key", "")),
            source=endpoint(obj["source"]),
            destination=endpoint(obj["destination"]),
            local_ts=selectors(obj["local_ts"]),
            remote_ts=selectors(obj["remote_ts"]),
            esn=bool(obj.get("esn", False)),
            encap=bool(obj.get("encap", True)),
            replay_window=int(obj.get("replay_window", 64)),
            child_uniqueid=int(obj.get("child", 1)),
            ike_uniqueid=int(obj.get("ike", 0)),
            child_name=str(obj.get("child_name", "")),
            mode=str(obj.get("mode", "tunnel")),
            seq_out=int(obj.get("seq_out", 0)),
            replay_top=int(obj.get("replay_top", 0)),
            soft_bytes=int(obj.get("soft_bytes", 0)),
            hard_bytes=int(obj.get("hard_bytes", 0)),
            soft_packets=int(obj.get("soft_packets", 0)),
            hard_packets=int(obj.get("hard_packets", 0)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataPlaneError(f"bad SA description: {exc}") from None
