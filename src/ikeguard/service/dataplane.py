"""Choose and open the data plane named by ``[gateway] dataplane`` and say which ESP transforms it can run
(ARCHITECTURE rule 4: only those are offered or accepted).

``none`` records SAs without moving packets; ``userspace`` is ESP over a TUN device and owns the NAT-T (4500)
socket of one address family (IKE on it reaches the service through ``on_ike``); ``xfrm`` is the Linux kernel,
used only when its probe says ESP is available, else the gateway refuses to start with one line naming
``gateway.dataplane``.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ikeguard.dataplane.base import DataPlane, DataPlaneFeatures
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.engine.events import IpAddress
from ikeguard.wire.iana import TransformType
from ikeguard.wire.transforms import Transform

log = logging.getLogger("ikeguard.service")
TUN_NAME = "ikg0"


class DataPlaneUnavailable(Exception):
    """The configured data plane cannot run here (one line for the operator)."""


def esp_supported(features: DataPlaneFeatures) -> Callable[[Transform], bool]:
    """A predicate: may this ESP transform be negotiated with this data plane?"""
    encr_ids = {e for e, _ in features.encr}

    def supported(t: Transform) -> bool:
        kind = int(t.type)
        if kind == TransformType.ENCR:
            if t.key_length is None:
                return t.id in encr_ids
            return (t.id, t.key_length) in features.encr or (t.id, None) in features.encr
        if kind == TransformType.INTEG:
            return t.id == 0 or t.id in features.integ
        if kind == TransformType.ESN:
            return t.id == 0 or features.esn
        return True

    return supported


@dataclass
class OpenedDataPlane:
    """A data plane ready for the gateway, and how to close it."""

    plane: DataPlane
    close: Callable[[], None]
    natt_family: int | None = None  # IP version whose 4500 socket the plane owns (userspace)


def _listen_addresses(listen: tuple[str, ...]) -> list[IpAddress]:
    return [ipaddress.ip_address(a) for a in listen]


def open_dataplane(kind: str, listen: tuple[str, ...], natt_port: int) -> OpenedDataPlane:
    """Open data plane ``kind`` ("none" | "userspace" | "xfrm"); DataPlaneUnavailable when it cannot run."""
    if kind == "none":
        return OpenedDataPlane(NoneDataPlane(), lambda: None)
    if kind == "userspace":
        return _open_userspace(_listen_addresses(listen), natt_port)
    if kind == "xfrm":
        return _open_xfrm()
    raise DataPlaneUnavailable(f'gateway.dataplane = "{kind}": unknown data plane (userspace | xfrm | none)')


def _open_userspace(addresses: list[IpAddress], natt_port: int) -> OpenedDataPlane:
    from ikeguard.dataplane.userspace.plane import UserspaceDataPlane
    from ikeguard.service.sockets import open_udp

    if not addresses:
        raise DataPlaneUnavailable('gateway.dataplane = "userspace" needs a gateway.listen address')
    # One socket carries ESP and IKE on 4500 (RFC 3948): the first IPv4 listen address, else the first one.
    address = next((a for a in addresses if a.version == 4), addresses[0])
    try:
        sock = open_udp(address, natt_port)
    except OSError as exc:
        raise DataPlaneUnavailable(f"cannot bind {address} port {natt_port} for ESP-in-UDP: {exc}") from None
    try:
        plane = UserspaceDataPlane(TUN_NAME, sock)
    except OSError as exc:
        sock.close()
        raise DataPlaneUnavailable(
            f'gateway.dataplane = "userspace": cannot open the TUN device ({exc}); run as root '
            'or choose dataplane = "none"') from None
    others = [a for a in addresses if a.version != address.version]
    if others:
        log.warning("userspace data plane carries ESP over IPv%d only; IKE on %s works, ESP over IPv%d is "
                    "dropped", address.version, ", ".join(map(str, others)), others[0].version)

    def close() -> None:
        plane.close()
        sock.close()

    return OpenedDataPlane(plane, close, natt_family=address.version)


def _open_xfrm() -> OpenedDataPlane:
    """The kernel data plane through the xfrm package's ``probe()`` / ``open_plane()`` when it has them."""
    try:
        module: Any = importlib.import_module("ikeguard.dataplane.xfrm")
    except ImportError as exc:
        raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": not available in this build ({exc})'
                                   ) from None
    probe = getattr(module, "probe", None)
    opener = getattr(module, "open_plane", None) or getattr(module, "XfrmDataPlane", None)
    if probe is None or opener is None:
        raise DataPlaneUnavailable('gateway.dataplane = "xfrm": the kernel data plane is not implemented in '
                                   'this build; use "userspace"')
    try:
        result = probe()
    except OSError as exc:
        raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": kernel XFRM unavailable ({exc}); '
                                   'use "userspace"') from None
    ok = getattr(result, "esp", result)
    if not ok:
        why = getattr(result, "reason", "") or "the kernel has no ESP support"
        raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": {why}; use "userspace"')
    plane = opener()
    closer = getattr(plane, "close", None)
    return OpenedDataPlane(plane, closer if callable(closer) else (lambda: None))
