"""ESP data planes behind one interface (:mod:`ikeguard.dataplane.base`): userspace ESP-in-UDP over TUN,
and ``none`` (records calls). The service drives them; the engine never imports this package."""

from ikeguard.dataplane.base import (
    DataPlane,
    DataPlaneEvent,
    DataPlaneFeatures,
    InstallFailed,
    LifetimeReached,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
    SequenceNearOverflow,
)

__all__ = [
    "DataPlane",
    "DataPlaneEvent",
    "DataPlaneFeatures",
    "InstallFailed",
    "LifetimeReached",
    "SaConfig",
    "SaCounters",
    "SaDirection",
    "SaEndpoint",
    "SequenceNearOverflow",
]
