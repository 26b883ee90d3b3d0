"""Choose and open the data plane named by ``[gateway] dataplane`` and say which ESP transforms it can run
(ARCHITECTURE rule 4: only those are offered or accepted).

``none`` records SAs without moving packets; ``userspace`` is ESP over a TUN device and owns the NAT-T (4500)
socket, one plane per address family (IKE on it reaches the service through ``on_ike``); ``xfrm`` is the
Linux kernel, used only when its probe says ESP is available, else the gateway refuses to start with one
line naming ``gateway.dataplane``; its IKE sockets bypass IPsec, its 4500 sockets decapsulate ESP in the
kernel.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ikeguard.dataplane.base import DataPlane, DataPlaneError, DataPlaneFeatures
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.engine.events import IpAddress
from ikeguard.wire.iana import TransformType
from ikeguard.wire.transforms import Transform

log = logging.getLogger("ikeguard.service")
TUN_NAME = "ikg0"  # IPv4 outer addresses (or the only family)
TUN_NAME6 = "ikg6"  # IPv6 outer addresses when both families are listened on


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


def _listen_addresses(listen: tuple[str, ...]) -> list[IpAddress]:
    return [ipaddress.ip_address(a) for a in listen]


def open_dataplane(kind: str, listen: tuple[str, ...], natt_port: int) -> OpenedDataPlane:
    """Open data plane ``kind`` ("none" | "userspace" | "xfrm"); DataPlaneUnavailable when it cannot run."""
    if kind == "none":
        return OpenedDataPlane(NoneDataPlane(record_calls=False), lambda: None)  # no call log: tests' own
    if kind == "userspace":
        return _open_userspace(_listen_addresses(listen), natt_port)
    if kind == "xfrm":
        return _open_xfrm()
    raise DataPlaneUnavailable(f'gateway.dataplane = "{kind}": unknown data plane (userspace | xfrm | none)')


def check_dataplane(kind: str) -> None:
    """DataPlaneUnavailable when data plane ``kind`` cannot run here, without opening it: what the supervisor
    of several workers checks before starting them (each worker opens its own), so that it refuses with the
    same one line as a single process."""
    if kind == "xfrm":
        from ikeguard.dataplane.xfrm import probe

        result = probe()
        if not result.esp:
            raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": {result.reason}')


def _open_userspace(addresses: list[IpAddress], natt_port: int) -> OpenedDataPlane:
    """One plane per IP version of ``listen`` (ESP-in-UDP on the first address of each family, port 4500)."""
    from ikeguard.dataplane.userspace.plane import UserspaceDataPlane
    from ikeguard.service.familyplanes import FamilyPlanes
    from ikeguard.service.sockets import open_udp

    if not addresses:
        raise DataPlaneUnavailable('gateway.dataplane = "userspace" needs a gateway.listen address')
    planes: dict[int, UserspaceDataPlane] = {}
    socks: list[socket.socket] = []

    def close() -> None:
        for plane in planes.values():
            plane.close()
        for sock in socks:
            sock.close()

    for version in sorted({a.version for a in addresses}):
        address = next(a for a in addresses if a.version == version)
        try:
            sock = open_udp(address, natt_port)
        except OSError as exc:
            close()
            raise DataPlaneUnavailable(f"cannot bind {address} port {natt_port} for ESP-in-UDP: {exc}"
                                       ) from None
        socks.append(sock)
        try:
            planes[version] = UserspaceDataPlane(TUN_NAME if version == 4 else TUN_NAME6, sock)
        except OSError as exc:
            close()
            raise DataPlaneUnavailable(
                f'gateway.dataplane = "userspace": cannot open the TUN device ({exc}); run as root '
                'or choose dataplane = "none"') from None
    if len(planes) == 1:
        return OpenedDataPlane(next(iter(planes.values())), close)
    return OpenedDataPlane(FamilyPlanes(dict(planes)), close)


def _open_xfrm() -> OpenedDataPlane:
    """The kernel data plane, after the probe says this kernel carries ESP (else one line naming the key)."""
    try:
        from ikeguard.dataplane.xfrm import XfrmDataPlane, probe
    except ImportError as exc:  # pragma: no cover - part of the package
        raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": not available in this build ({exc})'
                                   ) from None
    result = probe()
    if not result.esp:
        raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": {result.reason}')
    for note in result.notes:
        log.warning("xfrm: %s", note)
    try:
        plane = XfrmDataPlane(features=result.features)
    except (OSError, DataPlaneError) as exc:
        raise DataPlaneUnavailable(f'gateway.dataplane = "xfrm": {exc}') from None

    def close() -> None:
        try:
            plane.flush()  # every state and policy we installed
        finally:
            plane.close()

    return OpenedDataPlane(plane, close)
