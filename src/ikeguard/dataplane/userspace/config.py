"""JSON description of static SAs and policies for the standalone userspace data plane
(``python -m ikeguard.dataplane.userspace CONFIG.json``): tests, benchmarks, and manual keying."""

from __future__ import annotations

import ipaddress
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


def selectors(items: list[str]) -> tuple[TrafficSelector, ...]:
    """Configured selector strings (swanctl syntax) to selectors."""
    return resolve(items, own_address=None)


def sa_from_json(obj: dict[str, Any]) -> SaConfig:
    """One SA from its JSON description; raises DataPlaneError with the reason."""
    try:
        _, encr = registry.by_name(str(obj["encr"]))
        if not isinstance(encr, EncrAlgorithm):
            raise DataPlaneError(f"{obj['encr']} is not an encryption algorithm")
        integ_id = 0
        if obj.get("integ"):
            _, integ = registry.by_name(str(obj["integ"]))
            if not isinstance(integ, IntegAlgorithm):
                raise DataPlaneError(f"{obj['integ']} is not an integrity algorithm")
            integ_id = int(integ.id)
        spi = obj["spi"]
        return SaConfig(
            spi=int(spi, 0) if isinstance(spi, str) else int(spi),
            direction=SaDirection(obj["direction"]),
            encr_id=int(encr.id),
            encr_key_bits=encr.key_bits,
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
            soft_bytes=int(obj.get("soft_bytes", 0)),
            hard_bytes=int(obj.get("hard_bytes", 0)),
            soft_packets=int(obj.get("soft_packets", 0)),
            hard_packets=int(obj.get("hard_packets", 0)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataPlaneError(f"bad SA description: {exc}") from None
